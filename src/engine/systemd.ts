/**
 * Socket activation as systemd does it (sd_listen_fds): when LISTEN_PID is this process and
 * LISTEN_FDS at least 1, the listening socket is fd 3. The variables are removed once read, so
 * the tools the engine starts do not take the socket for theirs.
 */

/** The first fd systemd passes (SD_LISTEN_FDS_START). */
const LISTEN_FDS_START = 3;

/** The listening fd systemd handed over, or undefined when the engine was not socket-activated. */
export function takeListenFd(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const pid = Number(env['LISTEN_PID']);
  const count = Number(env['LISTEN_FDS']);
  delete env['LISTEN_PID'];
  delete env['LISTEN_FDS'];
  delete env['LISTEN_FDNAMES'];
  if (pid !== process.pid || !(count >= 1)) return undefined;
  return LISTEN_FDS_START;
}
