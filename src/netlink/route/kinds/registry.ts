/**
 * Link kinds: one public mechanism for the typed settings of each IFLA_INFO_KIND. A kind is its
 * name, the schema of its IFLA_INFO_DATA (typed options, encoded and decoded by the generic
 * codec), optionally the schema of the IFLA_INFO_SLAVE_DATA its ports carry, and a check of
 * the options before they are sent. Built-in kinds and user kinds go through the same table:
 *
 *   registerLinkKind({ kind: 'vcan', data: {} });
 *   declare module 'tsnetlink' { interface LinkKindOptions { vcan: {} } }
 */
import { ValidationError } from '../../../errors.js';
import type { Attrs, Schema } from '../../core/attr.js';
import type { LinkRef } from '../../core/ref.js';
import { bridgeKind, type BridgeAttrs } from './bridge.js';
import { netkitKind, vethKind, vxcanKind, type NetkitOptions, type VethAttrs } from './veth.js';
import { erspanKind, geneveKind, greKind, gretapKind, ipipKind, sitKind, vxlanKind, type GeneveOptions, type GreOptions, type IptunOptions, type VxlanOptions } from './tunnels.js';
import { ipvlanKind, ipvtapKind, macvlanKind, macvtapKind, vlanKind, type IpvlanOptions, type MacvlanOptions, type VlanOptions } from './lower.js';
import { bondKind, type BondOptions } from './bond.js';
import { amtKind, bareudpKind, dummyKind, hsrKind, ifbKind, nlmonKind, tunKind, vrfKind, wireguardKind, type AmtOptions, type BareudpOptions, type HsrOptions, type VrfOptions } from './simple.js';
import { ip6erspanKind, ip6greKind, ip6gretapKind, ip6tnlKind, macsecKind, vti6Kind, vtiKind, xfrmKind, type Ip6greOptions, type Ip6tnlOptions, type MacsecOptions, type VtiOptions, type XfrmLinkOptions } from './tunnels6.js';

/** A link kind: what `ip link add ... type KIND ...` accepts and `ip -d link show` prints for it. */
export interface LinkKind<S extends Schema = Schema> {
  /** IFLA_INFO_KIND as the kernel names it ('vxlan', 'macvlan', ...). */
  readonly kind: string;
  /** IFLA_INFO_DATA attributes, in the order iproute2 sends them. */
  readonly data?: S;
  /** IFLA_INFO_SLAVE_DATA of links enslaved to a link of this kind (bridge ports, bond ports). */
  readonly slaveData?: Schema;
  /** Options iproute2 always sends for this kind, merged under the caller's. */
  readonly defaults?: Attrs<S>;
  /** Checks options before anything is sent (throw ValidationError). */
  validate?(options: Attrs<S>): void;
  /** True when the link needs a lower device (IFLA_LINK): vlan, macvlan, ipvlan. */
  readonly needsLower?: boolean;
}

/** Options whose `link` (the underlay device) may be given as a name or a Link as well as an ifindex. */
export type WithLower<O> = Omit<O, 'link'> & { link?: LinkRef };

/**
 * The typed options of each kind for `linkAdd`. Augment it to type a kind of your own:
 * `declare module 'tsnetlink' { interface LinkKindOptions { mykind: MyOptions } }`.
 */
export interface LinkKindOptions {
  bridge: BridgeAttrs;
  vxlan: WithLower<VxlanOptions>;
  geneve: GeneveOptions;
  gre: WithLower<GreOptions>;
  gretap: WithLower<GreOptions>;
  erspan: WithLower<GreOptions>;
  ipip: WithLower<IptunOptions>;
  sit: WithLower<IptunOptions>;
  vlan: VlanOptions;
  macvlan: MacvlanOptions;
  macvtap: MacvlanOptions;
  ipvlan: IpvlanOptions;
  ipvtap: IpvlanOptions;
  bond: BondOptions;
  vrf: VrfOptions;
  dummy: Record<string, never>;
  ifb: Record<string, never>;
  nlmon: Record<string, never>;
  wireguard: Record<string, never>;
  ip6tnl: WithLower<Ip6tnlOptions>;
  ip6gre: WithLower<Ip6greOptions>;
  ip6gretap: WithLower<Ip6greOptions>;
  ip6erspan: WithLower<Ip6greOptions>;
  vti: WithLower<VtiOptions>;
  vti6: WithLower<VtiOptions>;
  xfrm: WithLower<XfrmLinkOptions>;
  macsec: MacsecOptions;
  bareudp: BareudpOptions;
  amt: WithLower<AmtOptions>;
  hsr: HsrOptions;
  vxcan: VethAttrs;
  netkit: NetkitOptions;
}

/** The options `linkAdd` takes for a kind: typed for a known kind, attributes or raw IFLA_INFO_DATA bytes otherwise. */
export type LinkOptionsOf<K extends string> = K extends keyof LinkKindOptions ? LinkKindOptions[K] : Record<string, unknown> | Buffer;

let table: Map<string, LinkKind> | undefined;
/** The kinds table, seeded with the built-ins on first use (so no module does work at import). */
function kinds(): Map<string, LinkKind> {
  if (!table) {
    const builtins = [bridgeKind, vethKind, vxlanKind, geneveKind, greKind, gretapKind, ipipKind, sitKind, vlanKind, macvlanKind, macvtapKind, ipvlanKind, ipvtapKind, bondKind, dummyKind, ifbKind, nlmonKind, wireguardKind, vrfKind, tunKind, ip6tnlKind, ip6greKind, ip6gretapKind, vtiKind, vti6Kind, xfrmKind, erspanKind, ip6erspanKind, macsecKind, bareudpKind, amtKind, hsrKind, vxcanKind, netkitKind];
    table = new Map(builtins.map((k) => [k.kind, k as unknown as LinkKind]));
  }
  return table;
}

/** Registers a link kind (replacing a built-in of the same name); `ip link add type KIND` then takes typed options. */
export function registerLinkKind<S extends Schema>(k: LinkKind<S>): void {
  if (typeof k.kind !== 'string' || k.kind === '' || Buffer.byteLength(k.kind) > 63) throw new ValidationError('kind', `${String(k.kind)} is not a link kind name`);
  kinds().set(k.kind, k as unknown as LinkKind);
}

/** The registered kind of that name, if any. */
export function linkKind(name: string | undefined): LinkKind | undefined {
  return name === undefined ? undefined : kinds().get(name);
}

/** Every registered kind's name. */
export function linkKinds(): string[] {
  return [...kinds().keys()];
}

/** The IFLA_INFO_SLAVE_DATA schema for a port: by its slave kind ('bridge'), or by a kind 'bridge_slave' as iproute2 sends it. */
export function slaveSchemaOf(slaveKind: string | undefined, kind: string | undefined): Schema | undefined {
  const master = slaveKind ?? (kind?.endsWith('_slave') ? kind.slice(0, -'_slave'.length) : undefined);
  return linkKind(master)?.slaveData;
}
