/** A part of apsd with a life of its own (DHCP capture, DHCP server, FastAGI, SIP PnP …), started and stopped by app.ts. */
export interface Service {
  name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** called after a successful configuration reload */
  reload?(): void;
  /** key=value facts for the "apsd ready" line */
  describe?(): Record<string, string>;
}
