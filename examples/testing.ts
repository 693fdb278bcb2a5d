// examples/testing.ts: testing code that uses tsnetlink without root: a fake kernel behind the socket.
import { Rtnl, NetlinkError, testing, constants, linkRequests } from 'tsnetlink';

const sock = testing.dial((req) =>
  req.type === constants.RTM.GETLINK
    ? testing.dumpReply(req, constants.RTM.NEWLINK, [linkRequests.addLinkRequest('ifb0', 'ifb')])
    : [testing.ack(req, req.type === constants.RTM.DELLINK ? 19 : 0)],
);
const rt = new Rtnl(sock);
console.log(rt.linkList().map((l) => [l.name, l.kind]));   // [ [ 'ifb0', 'ifb' ] ]
try {
  rt.linkDel(5);
} catch (e) {
  if (!(e instanceof NetlinkError)) throw e;
  console.log(e.code);                                       // ENODEV
}
