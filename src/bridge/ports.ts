/** Port-mapping specs as users type them (`-p 8080:80`, `-p 53:53/udp`, `-p 127.0.0.1:8080:80`). Pure. */
import { ValidationError } from '../errors.js';
import { parseIp } from '../netlink/validate.js';
import { mappingsOverlap, type PortMapping } from '../iptables/rules.js';

export type { PortMapping };

function port(text: string | undefined, field: string, spec: string): number {
  if (text === undefined || !/^\d{1,5}$/.test(text) || Number(text) < 1 || Number(text) > 65535) {
    throw new ValidationError(field, `${JSON.stringify(spec)}: port must be 1-65535`);
  }
  return Number(text);
}

/** Parses `[HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|/udp]` (tcp by default). `docker run -p SPEC` */
export function parsePortMapping(spec: string): PortMapping {
  if (typeof spec !== 'string') throw new ValidationError('port mapping', 'must be a string like 8080:80');
  const [body, proto, extra] = spec.split('/');
  if (extra !== undefined || body === undefined) throw new ValidationError('port mapping', `${JSON.stringify(spec)} is not [HOSTIP:]HOST:CONTAINER[/tcp|udp]`);
  const protocol = proto ?? 'tcp';
  if (protocol !== 'tcp' && protocol !== 'udp') throw new ValidationError('port mapping', `${JSON.stringify(spec)}: protocol must be tcp or udp`);
  const parts = body.split(':');
  if (parts.length !== 2 && parts.length !== 3) throw new ValidationError('port mapping', `${JSON.stringify(spec)} is not [HOSTIP:]HOST:CONTAINER[/tcp|udp]`);
  const m: PortMapping = {
    hostPort: port(parts[parts.length - 2], 'host port', spec),
    containerPort: port(parts[parts.length - 1], 'container port', spec),
    protocol,
  };
  if (parts.length === 3) {
    const ip = parseIp(parts[0], 'host IP');
    if (ip.family !== 4) throw new ValidationError('host IP', `${JSON.stringify(spec)}: only IPv4 host IPs are supported`);
    if (ip.address !== '0.0.0.0') m.hostIp = ip.address;
  }
  return m;
}

/** Normalises user input (strings or objects) and refuses two mappings of the same host IP/port/protocol. */
export function normalizeMappings(input: readonly (string | PortMapping)[] | undefined): PortMapping[] {
  const out: PortMapping[] = [];
  for (const x of input ?? []) {
    const m = typeof x === 'string' ? parsePortMapping(x) : parsePortMapping(`${x.hostIp ? `${x.hostIp}:` : ''}${x.hostPort}:${x.containerPort}/${x.protocol ?? 'tcp'}`);
    const dup = out.find((o) => mappingsOverlap(o, m));
    if (dup) throw new ValidationError('port mapping', `${formatMapping(m)} is given twice (or overlaps ${formatMapping(dup)})`);
    out.push(m);
  }
  return out;
}

/** Formats a mapping back to its spec form. */
export function formatMapping(m: PortMapping): string {
  return `${m.hostIp ? `${m.hostIp}:` : ''}${m.hostPort}:${m.containerPort}/${m.protocol}`;
}
