/**
 * Building blocks of the book chapter's test scenario, shared by the demo and the end-to-end tests:
 * an "upstream" namespace behind the host, servers and clients in namespaces. Everything
 * lives in namespaces this process created; traffic goes only to their addresses.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { Rtnl, createNamedNetns, deleteNamedNetns, openRtnlIn, spawnInNetns, linkRequests, addrRequests, type NetnsHandle } from '../src/index.js';

/** A namespace standing for "the outside world": reachable from the host over a veth. */
export interface Upstream {
  ns: NetnsHandle;
  name: string;
  /** The host's address on the upstream link (what MASQUERADE rewrites to). */
  hostIp: string;
  /** The upstream namespace's own address. */
  ip: string;
  close(): void;
}

/** Creates netns NAME linked to the host: host 10.99.0.1/24 <-> upstream 10.99.0.2/24. `ip link add up0 type veth peer name eth0 netns NAME` */
export function makeUpstream(host: Rtnl, name = 'upstream', hostIf = 'up0'): Upstream {
  const ns = createNamedNetns(name);
  const inside = openRtnlIn(ns);
  try {
    const link = host.linkAddVeth(hostIf, { name: 'eth0', netnsFd: ns.fd }, { up: true });
    host.addrAdd(link.index, '10.99.0.1/24');
    inside.batchOrThrow([
      linkRequests.setUpRequest('lo'),
      linkRequests.setUpRequest('eth0'),
      addrRequests.addAddrRequest(link.peerIndex!, '10.99.0.2/24'),
    ]);
  } finally {
    inside.close();
  }
  return {
    ns,
    name,
    hostIp: '10.99.0.1',
    ip: '10.99.0.2',
    close() {
      ns.close();
      deleteNamedNetns(name);
    },
  };
}

/** JS for a server that answers `reply from=<client address>` (TCP, or UDP datagrams). */
function serverJs(port: number, reply: string, udp: boolean): string {
  return udp
    ? `const s=require('dgram').createSocket('udp4');s.on('message',(m,r)=>s.send('${reply} from='+r.address,r.port,r.address));s.bind(${port},()=>console.log('ready'))`
    : `require('net').createServer(c=>c.end('${reply} from='+c.remoteAddress.replace('::ffff:',''))).listen(${port},'0.0.0.0',()=>console.log('ready'))`;
}

/** JS for a client that prints the server's reply, exit 1 after 2 s without one. */
function clientJs(host: string, port: number, udp: boolean): string {
  return udp
    ? `const s=require('dgram').createSocket('udp4');s.on('message',m=>{console.log(m.toString());process.exit(0)});s.send('x',${port},'${host}');setTimeout(()=>{console.error('timeout');process.exit(1)},2000)`
    : `const s=require('net').connect(${port},'${host}');let d='';s.on('data',x=>d+=x);s.on('end',()=>{console.log(d);process.exit(0)});s.on('error',e=>{console.error(e.message);process.exit(1)});setTimeout(()=>{console.error('timeout');process.exit(1)},2000)`;
}

function node(ns: NetnsHandle | undefined, js: string): ChildProcess {
  const args = ['-e', js];
  const opts = { stdio: ['ignore', 'pipe', 'pipe'] as ('ignore' | 'pipe')[] };
  return ns ? spawnInNetns(ns, process.execPath, args, opts) : spawn(process.execPath, args, opts);
}

/** Starts a server in `ns` (or here) and resolves once it listens. */
export function serve(ns: NetnsHandle | undefined, port: number, reply: string, udp = false): Promise<ChildProcess> {
  const p = node(ns, serverJs(port, reply, udp));
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      p.kill();
      reject(new Error(`server on port ${port} did not start`));
    }, 5000);
    p.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('ready')) {
        clearTimeout(t);
        resolve(p);
      }
    });
    p.on('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`server on port ${port} exited with ${code}`));
    });
  });
}

/** Connects from `ns` (or here) to host:port and resolves to the reply; rejects with the client's error. */
export function fetchFrom(ns: NetnsHandle | undefined, host: string, port: number, udp = false): Promise<string> {
  const p = node(ns, clientJs(host, port, udp));
  let out = '';
  let err = '';
  p.stdout!.on('data', (d) => (out += d));
  p.stderr!.on('data', (d) => (err += d));
  return new Promise((resolve, reject) => {
    p.on('close', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`no reply from ${host}:${port}${udp ? '/udp' : ''}: ${err.trim() || `exit ${code}`}`))));
  });
}

/** Stops a server and waits for it (no stray processes, no fd leaks). */
export function stop(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    p.once('close', () => resolve());
    p.kill();
  });
}
