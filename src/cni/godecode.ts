/**
 * Reading a CNI configuration the way the Go plugins read it. Runtimes are Go programs, and some
 * send Go structs that have no JSON tags: containerd's CRI sends `runtimeConfig.portMappings` as
 * {"HostPort", "ContainerPort", "Protocol", "HostIP"} and its DNS and bandwidth the same way.
 * Go's encoding/json accepts that because it matches an object key to a field by its exact name
 * first and then case-insensitively (Unicode simple folding), ignores keys that match no field,
 * lets a later key overwrite an earlier one that matched the same field, and leaves a field
 * untouched for `null`. `goDecode` applies exactly that rule, once, to the whole configuration
 * through the shapes below, so that every part of the plugin sees the canonical field names.
 * Pure and import-free.
 */

/** A JSON value's expected shape: a value of any kind, a list of one shape, or an object of known fields. */
export type Shape = 'any' | { readonly items: Shape } | { readonly fields: Readonly<Record<string, Shape>> };

/** How deeply a configuration may nest: far more than any real one, far less than would exhaust the stack. */
export const MAX_DEPTH = 64;

/** A shape of an object whose fields are all `any` but those given. */
function fields(names: readonly string[], nested: Readonly<Record<string, Shape>> = {}): Shape {
  const f: Record<string, Shape> = {};
  for (const n of names) f[n] = 'any';
  return { fields: { ...f, ...nested } };
}

const list = (items: Shape): Shape => ({ items });

/** A route of a result or an IPAM configuration (libcni types.Route). */
const ROUTE = fields(['dst', 'gw', 'mtu', 'advmss', 'priority', 'table', 'scope']);
/** The DNS of a result or a configuration (libcni types.DNS). */
const DNS = fields(['nameservers', 'domain', 'search', 'options']);
/** One range of host-local's `ranges` and of the `ipRanges` capability. */
const RANGE = fields(['subnet', 'rangeStart', 'rangeEnd', 'gateway']);

/** A result: a chained plugin's prevResult or a delegated IPAM plugin's answer (0.3.0 to 1.1.0). */
export const RESULT_SHAPE: Shape = fields(['cniVersion'], {
  interfaces: list(fields(['name', 'mac', 'mtu', 'sandbox', 'socketPath', 'pciID'])),
  ips: list(fields(['version', 'interface', 'address', 'gateway'])),
  routes: list(ROUTE),
  dns: DNS,
});

/** The plugin's configuration: libcni's NetConf, the bridge plugin's fields, the capabilities' runtimeConfig. */
export const NETCONF_SHAPE: Shape = fields(
  [
    'cniVersion', 'cniVersions', 'name', 'type', 'capabilities', 'bridge', 'isGateway', 'isDefaultGateway', 'forceAddress', 'ipMasq', 'mtu',
    'hairpinMode', 'promiscMode', 'vlan', 'vlanTrunk', 'preserveDefaultVlan', 'macspoofchk', 'enabledad', 'disableContainerInterface',
    'portIsolation', 'forwardPolicy', 'allowHostListener',
    // The stock bandwidth plugin's own keys, which set limits for every attachment of the network.
    'ingressRate', 'ingressBurst', 'egressRate', 'egressBurst', 'unshapedSubnets', 'shapedSubnets',
  ],
  {
    ipam: fields(['type', 'subnet', 'gateway', 'rangeStart', 'rangeEnd', 'dataDir', 'resolvConf'], { ranges: list(list(RANGE)), routes: list(ROUTE) }),
    dns: DNS,
    args: fields([], { cni: fields(['ips', 'mac']) }),
    prevResult: RESULT_SHAPE,
    runtimeConfig: fields(['ips', 'mac', 'cgroupPath'], {
      portMappings: list(fields(['hostPort', 'containerPort', 'protocol', 'hostIP'])),
      bandwidth: fields(['ingressRate', 'ingressBurst', 'egressRate', 'egressBurst', 'unshapedSubnets', 'shapedSubnets']),
      ipRanges: list(list(RANGE)),
      dns: fields(['servers', 'searches', 'options', 'domain']),
    }),
    'cni.dev/valid-attachments': list(fields(['containerID', 'ifname'])),
  },
);

/**
 * One code point folded as Go's bytes.EqualFold compares it (Unicode simple case folding): the
 * Kelvin sign folds to "k" and the long s to "s", while a letter whose case mapping takes more
 * than one code point (ß, İ) stays itself.
 */
function foldChar(c: string): string {
  const up = c.toUpperCase();
  if ([...up].length !== 1) return c;
  const low = up.toLowerCase();
  return [...low].length === 1 ? low : up;
}

/** A key folded for a case-insensitive match. */
export function foldKey(key: string): string {
  let out = '';
  for (const c of key) out += foldChar(c);
  return out;
}

/** The depth of a JSON value (a scalar is 0), computed without recursion so that any depth is measured safely. */
export function jsonDepth(v: unknown): number {
  let max = 0;
  const stack: [unknown, number][] = [[v, 0]];
  while (stack.length > 0) {
    const [x, d] = stack.pop()!;
    if (typeof x !== 'object' || x === null) continue;
    if (d + 1 > max) max = d + 1;
    if (max > MAX_DEPTH) return max;
    for (const c of Array.isArray(x) ? x : Object.values(x)) stack.push([c, d + 1]);
  }
  return max;
}

/**
 * `value` as Go would decode it into `shape`, with canonical field names: for each key in order,
 * the field of that exact name, else the one equal to it case-insensitively; unknown keys are
 * dropped; `null` unsets an object or list field and leaves any other alone; a later key overwrites an earlier one for the same
 * field. Values whose kind does not fit the shape are kept as they are, for the caller's checks
 * to name. Call it on a value already known to be at most MAX_DEPTH deep.
 */
export function goDecode(value: unknown, shape: Shape): unknown {
  if (shape === 'any' || typeof value !== 'object' || value === null) return value;
  if ('items' in shape) return Array.isArray(value) ? value.map((v) => goDecode(v, shape.items)) : value;
  if (Array.isArray(value)) return value;
  const exact = shape.fields;
  const folded = new Map<string, string>();
  for (const name of Object.keys(exact)) if (!folded.has(foldKey(name))) folded.set(foldKey(name), name);
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
    const name = Object.prototype.hasOwnProperty.call(exact, key) ? key : folded.get(foldKey(key));
    if (name === undefined) continue;
    const fieldShape = exact[name]!;
    // Go sets a map, slice or pointer to nil for null and leaves any other kind as it was.
    if (v === null) {
      if (fieldShape !== 'any') delete out[name];
      continue;
    }
    out[name] = goDecode(v, fieldShape);
  }
  return out;
}
