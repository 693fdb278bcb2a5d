/**
 * CNI versions: which the plugin speaks, how a configuration's version is chosen, and the
 * VERSION answer. Pure and import-free, so that VERSION (which Podman runs on almost every
 * command) starts nothing but Node itself.
 */

/** The spec versions this plugin implements, oldest first. */
export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;

/** A version this plugin implements. */
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];

/** The newest version this plugin implements. */
export const CURRENT_VERSION: CniVersion = '1.1.0';

const SEMVER_RE = /^(\d+)\.(\d+)\.(\d+)$/;

/** Whether `v` is a version this plugin implements. */
export function isSupported(v: unknown): v is CniVersion {
  return typeof v === 'string' && (SUPPORTED_VERSIONS as readonly string[]).includes(v);
}

/** Orders two "X.Y.Z" versions (negative, 0, positive); undefined when either is not one. */
export function compareVersions(a: string, b: string): number | undefined {
  const x = SEMVER_RE.exec(a);
  const y = SEMVER_RE.exec(b);
  if (!x || !y) return undefined;
  for (let i = 1; i <= 3; i++) {
    const d = Number(x[i]) - Number(y[i]);
    if (d !== 0) return d;
  }
  return 0;
}

/**
 * The version a request speaks: its `cniVersion`, or, when a configuration lists `cniVersions`
 * without one, the newest of those this plugin implements (the spec's selection rule). A
 * configuration that names neither is the spec's oldest, "0.1.0", as libcni reads it.
 */
export function requestVersion(conf: { cniVersion?: unknown; cniVersions?: unknown }): string {
  if (typeof conf.cniVersion === 'string' && conf.cniVersion !== '') return conf.cniVersion;
  if (Array.isArray(conf.cniVersions)) {
    const ours = conf.cniVersions.filter(isSupported).sort((a, b) => compareVersions(a, b)!);
    const best = ours[ours.length - 1];
    if (best !== undefined) return best;
  }
  return '0.1.0';
}

/**
 * The VERSION answer: `cniVersion` is the version the request named (the spec's rule; libcni
 * sends {"cniVersion":"1.0.0"}), or the newest one when stdin held none.
 */
export function versionResult(stdin: string): { cniVersion: string; supportedVersions: string[] } {
  let asked: string = CURRENT_VERSION;
  try {
    const v = (JSON.parse(stdin) as { cniVersion?: unknown } | null)?.cniVersion;
    if (typeof v === 'string' && SEMVER_RE.test(v)) asked = v;
  } catch {
    // VERSION ignores a body it cannot read, as the reference plugins do: the answer is the same.
  }
  return { cniVersion: asked, supportedVersions: [...SUPPORTED_VERSIONS] };
}

/** Whether results of `v` mark each IP with its "version" (0.3.0 to 0.4.0; 1.0.0 dropped it). */
export function ipsHaveVersion(v: string): boolean {
  return compareVersions(v, '1.0.0')! < 0;
}
