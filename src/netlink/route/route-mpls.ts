/** MPLS route requests (AF_MPLS): `ip -f mpls route add|del LABEL [as LABELS] via inet|inet6 ADDR dev LINK`. Pure. */
import { AF, NLM_F, RT_SCOPE, RT_TABLE, RTM, RTN, RTPROT } from '../core/constants.js';
import { request, type Request } from '../core/message.js';
import { RT_FAMILY, mplsRouteMessage, type MplsRouteAttrs } from './route-schema.js';
import { withIndexes, type LinkRef } from '../core/ref.js';
import { validateU32 } from '../core/validate.js';
import { parseIp } from '../../ip/parse.js';

/** An MPLS route to add or delete: `ip -f mpls route add LABEL [as NEWLABELS] via inet|inet6 ADDR dev LINK` */
export interface MplsRouteSpec {
  label: number;
  newdst?: number[];
  via?: string;
  oif?: LinkRef;
}

function mplsRequest(type: number, flags: number, s: MplsRouteSpec): Request {
  return withIndexes({ oif: s.oif }, (idx) => {
    const attrs: MplsRouteAttrs = { dst: [validateU32(s.label, 'label', 16, 0xfffff)] };
    if (s.newdst) attrs.newdst = s.newdst;
    if (s.via !== undefined) {
      const v = parseIp(s.via, 'via');
      attrs.via = { family: v.family === 4 ? AF.INET : AF.INET6, address: v.address };
    }
    if (idx.oif !== undefined) attrs.oif = idx.oif;
    // As iproute2: MPLS routes are unicast and universe scope on delete too.
    const isDel = type === RTM.DELROUTE;
    return request(mplsRouteMessage, type, flags, { family: RT_FAMILY.MPLS, dstLen: 20, table: RT_TABLE.MAIN, protocol: isDel ? 0 : RTPROT.BOOT, scope: RT_SCOPE.UNIVERSE, type: RTN.UNICAST }, attrs);
  });
}

/** ip -f mpls route add LABEL [as LABELS] via inet|inet6 ADDR dev LINK */
export function addMplsRouteRequest(s: MplsRouteSpec): Request {
  return mplsRequest(RTM.NEWROUTE, NLM_F.CREATE | NLM_F.EXCL, s);
}

/** ip -f mpls route del LABEL */
export function deleteMplsRouteRequest(s: MplsRouteSpec): Request {
  return mplsRequest(RTM.DELROUTE, 0, s);
}
