/** A part of apsd with a life of its own (DHCP capture, DHCP server, FastAGI, SIP PnP …), started and stopped by app.ts. */
export interface Service {
  name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** called after a successful configuration reload */
  reload?(): void;
  /** key=value facts for the "apsd ready" line */
  describe?(): Record<string, string>;
  /** what runs, on which interface, since when, the last error: for systemd's STATUS and `apsctl status` */
  status?(): ServiceStatus[];
}

export interface ServiceStatus {
  service: string;
  /** running: doing its job; waiting: for its interface (or a restart of its capture), retried by itself */
  state: 'running' | 'waiting';
  interface?: string;
  /** ISO time of the last change of state */
  since: string;
  lastError?: string;
}
