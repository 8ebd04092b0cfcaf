/** Process exit statuses, from BSD sysexits(3), so scripts and systemd can tell failures apart. */
export const ExitCode = {
  Ok: 0,
  /** The command ran and failed (a node not found, a conflict): not a usage or data problem. */
  Failure: 1,
  /** The command line was wrong. */
  Usage: 64,
  /** The input data was malformed (a codec error). */
  DataError: 65,
  /** An input file could not be opened. */
  NoInput: 66,
  /** A service the command needs is not available (no dmgw service answers on the control socket). */
  Unavailable: 69,
  /** An I/O error other than a missing input. */
  IoError: 74,
  /** The configuration is invalid: systemd must not restart (RestartPreventExitStatus=78). */
  Config: 78,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];
