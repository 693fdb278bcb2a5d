/**
 * IP address text <-> bytes for the netlink codec: strict dotted-quad IPv4 (no short or octal
 * forms), IPv6 with `::` and an IPv4 tail, printed as RFC 5952 says (lowercase, no leading
 * zeros, the longest run of two or more zero groups as `::`; IPv4-mapped ones in hex groups,
 * as iproute2 and ipaddr.js print them).
 * Dependency-free, so decoding an address costs a few string operations.
 */

const V4 = /^(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})$/;

/** The 4 bytes of a dotted-quad IPv4 address, or undefined. */
export function parseIPv4(text: string): number[] | undefined {
  const m = V4.exec(text);
  if (!m) return undefined;
  const b = [Number(m[1]), Number(m[2]), Number(m[3]), Number(m[4])];
  return b.every((x) => x <= 255) ? b : undefined;
}

/** The 16 bytes of an IPv6 address, or undefined. */
export function parseIPv6(text: string): number[] | undefined {
  if (text.length < 2 || text.length > 45 || !/^[0-9a-fA-F:.]+$/.test(text)) return undefined;
  let s = text;
  if (s.includes('.')) {
    // An IPv4 tail stands for the last two groups.
    const lastColon = s.lastIndexOf(':');
    const v4 = parseIPv4(s.slice(lastColon + 1));
    if (!v4) return undefined;
    s = `${s.slice(0, lastColon + 1)}${((v4[0]! << 8) | v4[1]!).toString(16)}:${((v4[2]! << 8) | v4[3]!).toString(16)}`;
  }
  const halves = s.split('::');
  if (halves.length > 2) return undefined;
  const groups = (part: string): number[] | undefined => {
    if (part === '') return [];
    const out: number[] = [];
    for (const g of part.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const head = groups(halves[0] ?? '');
  const rest = halves.length === 2 ? groups(halves[1] ?? '') : [];
  if (!head || !rest) return undefined;
  const given = head.length + rest.length;
  let all: number[];
  if (halves.length === 2) {
    if (given > 7) return undefined;
    all = [...head, ...new Array<number>(8 - given).fill(0), ...rest];
  } else {
    if (given !== 8) return undefined;
    all = head;
  }
  return all.flatMap((g) => [g >> 8, g & 255]);
}

/** Bytes of an IPv4 or IPv6 address, or undefined when it is neither. */
export function ipBytes(text: string): number[] | undefined {
  return text.includes(':') ? parseIPv6(text) : parseIPv4(text);
}

/** Formats 4 bytes at `o` as dotted quad. */
export function formatIPv4(b: Uint8Array, o = 0): string {
  return `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;
}

/** Formats 16 bytes at `o` as RFC 5952 text. */
export function formatIPv6(b: Uint8Array, o = 0): string {
  const g: number[] = [];
  for (let i = 0; i < 16; i += 2) g.push(((b[o + i] as number) << 8) | (b[o + i + 1] as number));
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (xs: number[]) => xs.map((x) => x.toString(16)).join(':');
  if (best < 0) return hex(g);
  return `${hex(g.slice(0, best))}::${hex(g.slice(best + bestLen))}`;
}

/** Canonical text of an address given as text (v4 as is, v6 per RFC 5952), or undefined. */
export function normalizeIp(text: string): { family: 4 | 6; address: string; bytes: number[] } | undefined {
  const b = ipBytes(text);
  if (!b) return undefined;
  return b.length === 4 ? { family: 4, address: formatIPv4(Uint8Array.from(b)), bytes: b } : { family: 6, address: formatIPv6(Uint8Array.from(b)), bytes: b };
}

/** The bytes with every bit after the first `prefix` cleared (network) or set (broadcast). */
export function maskBytes(bytes: readonly number[], prefix: number, fill: 0 | 1): number[] {
  return bytes.map((x, i) => {
    const keep = Math.max(0, Math.min(8, prefix - 8 * i));
    const hostMask = (0xff >> keep) & 0xff;
    return fill ? x | hostMask : x & ~hostMask & 0xff;
  });
}
