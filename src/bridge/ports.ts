/**
 * Port-mapping specs as users type them (`-p 8080:80`, `-p 53:53/udp`, `-p 127.0.0.1:8080:80`,
 * `-p [2001:db8::1]:8080:80`). Pure.
 */
import { ValidationError } from '../errors.js';
import { parseIp } from '../ip/parse.js';
import { mappingsOverlap, type PortMapping } from '../firewall/types.js';

export type { PortMapping };

function port(text: string | undefined, field: string, spec: string): number {
  if (text === undefined || !/^\d{1,5}$/.test(text) || Number(text) < 1 || Number(text) > 65535) {
    throw new ValidationError(field, `${JSON.stringify(spec)}: port must be 1-65535`);
  }
  return Number(text);
}

const FORM = '[HOSTIP:]HOST:CONTAINER[/tcp|udp], with an IPv6 HOSTIP in brackets';

/**
 * Parses `[HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|/udp]` (tcp by default), an IPv6 host IP in
 * brackets (`[2001:db8::1]:8080:80`; `[::]` is every local IPv6 address). `[::1]` is refused:
 * IPv6 has no route_localnet, so the kernel will not route a packet from ::1 out of the host to
 * a container (Docker runs a userspace proxy for it); publish on 127.0.0.1 or on a host address.
 * `docker run -p SPEC`
 */
export function parsePortMapping(spec: string): PortMapping {
  if (typeof spec !== 'string') throw new ValidationError('port mapping', 'must be a string like 8080:80');
  const [body, proto, extra] = spec.split('/');
  if (extra !== undefined || body === undefined) throw new ValidationError('port mapping', `${JSON.stringify(spec)} is not ${FORM}`);
  const protocol = proto ?? 'tcp';
  if (protocol !== 'tcp' && protocol !== 'udp') throw new ValidationError('port mapping', `${JSON.stringify(spec)}: protocol must be tcp or udp`);
  let host: string | undefined;
  let rest = body;
  if (body.startsWith('[')) {
    const end = body.indexOf(']:');
    if (end < 0) throw new ValidationError('port mapping', `${JSON.stringify(spec)} is not ${FORM}`);
    host = body.slice(1, end);
    rest = body.slice(end + 2);
  }
  const parts = rest.split(':');
  if (host === undefined && parts.length === 3) host = parts.shift();
  if (parts.length !== 2) throw new ValidationError('port mapping', `${JSON.stringify(spec)} is not ${FORM}`);
  const m: PortMapping = {
    hostPort: port(parts[0], 'host port', spec),
    containerPort: port(parts[1], 'container port', spec),
    protocol,
  };
  if (host !== undefined) {
    const ip = parseIp(host, 'host IP');
    if (ip.family === 6 && !body.startsWith('[')) throw new ValidationError('host IP', `${JSON.stringify(spec)}: write an IPv6 host IP in brackets, as [${ip.address}]:HOST:CONTAINER`);
    if (ip.family === 6 && ip.address === '::1') {
      throw new ValidationError('host IP', `${JSON.stringify(spec)}: ::1 cannot be published: IPv6 has no route_localnet, so the kernel does not route packets from the host's loopback to a container; use 127.0.0.1 or one of the host's IPv6 addresses`);
    }
    if (ip.address !== '0.0.0.0') m.hostIp = ip.address;
  }
  return m;
}

/** Normalises user input (strings or objects) and refuses two mappings of the same host IP/port/protocol. */
export function normalizeMappings(input: readonly (string | PortMapping)[] | undefined): PortMapping[] {
  const out: PortMapping[] = [];
  for (const x of input ?? []) {
    const m = typeof x === 'string' ? parsePortMapping(x) : parsePortMapping(formatMapping({ ...x, protocol: x.protocol ?? 'tcp' }));
    const dup = out.find((o) => mappingsOverlap(o, m));
    if (dup) throw new ValidationError('port mapping', `${formatMapping(m)} is given twice (or overlaps ${formatMapping(dup)})`);
    out.push(m);
  }
  return out;
}

/** Formats a mapping back to its spec form (an IPv6 host IP in brackets). */
export function formatMapping(m: PortMapping): string {
  const host = m.hostIp === undefined ? '' : m.hostIp.includes(':') ? `[${m.hostIp}]:` : `${m.hostIp}:`;
  return `${host}${m.hostPort}:${m.containerPort}/${m.protocol}`;
}
