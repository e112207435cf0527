/**
 * The peers of the PIN registration, for test/pin*.test.ts: a phone that listens for SIP on
 * UDP 127.0.0.1 and answers NOTIFY, an Asterisk manager that records actions, and an Asterisk
 * that calls a FastAGI server as res_agi does (environment block, then answers each command)
 * and keeps the channel variables the dialplan would see.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { buildResponse, parseSip, type SipRequest } from '../../src/wire/sip.js';

// ------------------------------------------------------------------ phone

export interface UdpPhone {
  port: number;
  /** every NOTIFY received (retransmissions included), parsed */
  requests: SipRequest[];
  /** raw datagrams, as received */
  raw: Buffer[];
  waitFor(n: number, ms?: number): Promise<SipRequest[]>;
  close(): Promise<void>;
}

/** A phone's SIP port: answers every request with `status` (null: never answers). Default 127.0.0.1, a free port. */
export async function udpPhone(opts: { status?: number | null; bind?: string; port?: number } = {}): Promise<UdpPhone> {
  const sock = dgram.createSocket('udp4');
  const requests: SipRequest[] = [];
  const raw: Buffer[] = [];
  const waiters: (() => void)[] = [];
  sock.on('message', (buf, rinfo) => {
    raw.push(buf);
    const p = parseSip(buf);
    if (!p.ok || p.msg.kind !== 'request') return;
    requests.push(p.msg);
    for (const w of waiters.splice(0)) w();
    const status = opts.status === undefined ? 200 : opts.status;
    if (status !== null) sock.send(buildResponse(p.msg, status, status === 200 ? 'OK' : 'Error'), rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject);
    sock.bind(opts.port ?? 0, opts.bind ?? '127.0.0.1', () => resolve());
  });
  return {
    port: sock.address().port,
    requests,
    raw,
    async waitFor(n, ms = 5000) {
      const deadline = Date.now() + ms;
      while (requests.length < n) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`the phone got ${requests.length} SIP requests, expected ${n}`);
        await new Promise<void>((r) => {
          const t = setTimeout(r, left);
          waiters.push(() => {
            clearTimeout(t);
            r();
          });
        });
      }
      return requests;
    },
    close: () => new Promise<void>((r) => sock.close(() => r())),
  };
}

// ------------------------------------------------------------------ AMI

export type AmiRecorded = [string, string][];

export interface FakeManagerOptions {
  secret?: string;
  banner?: string;
  /** answer to an action other than Login/Logoff: lines without ActionID (added); null = no answer at all */
  reply?: (a: AmiRecorded) => string[] | null;
  /** send an event before each response */
  chatty?: boolean;
  /** a list action (PJSIPShowEndpoint …): the events it lists, each as header lines (ActionID and the final EventList: Complete are added); null = not a list */
  events?: (a: AmiRecorded) => string[][] | null;
}

/**
 * An Asterisk manager that speaks as manager.c does (banner, Login with aps/amipass then the
 * FullyBooted event, Response/ActionID, Logoff → Goodbye; a failed login drops the session) and
 * records every action it receives, as ordered header pairs.
 */
export async function fakeManager(opts: FakeManagerOptions = {}) {
  const actions: AmiRecorded[] = [];
  const sockets = new Set<net.Socket>();
  const get = (a: AmiRecorded, k: string) => a.find(([kk]) => kk.toLowerCase() === k.toLowerCase())?.[1];
  const send = (sock: net.Socket, lines: string[]) => sock.write(lines.map((l) => l + '\r\n').join('') + '\r\n');
  const srv = net.createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => undefined);
    sock.setEncoding('utf8');
    sock.write((opts.banner ?? 'Asterisk Call Manager/9.0.0') + '\r\n');
    let buf = '';
    let cur: AmiRecorded = [];
    sock.on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).replace(/\r$/, '');
        buf = buf.slice(nl + 1);
        if (line !== '') {
          const c = line.indexOf(':');
          cur.push([line.slice(0, c), line.slice(c + 1).trim()]);
          continue;
        }
        if (!cur.length) continue;
        const a = cur;
        cur = [];
        actions.push(a);
        const id = get(a, 'ActionID');
        const idLine = id !== undefined ? [`ActionID: ${id}`] : [];
        const action = get(a, 'Action')?.toLowerCase();
        if (opts.chatty) send(sock, ['Event: PeerStatus', 'Privilege: system,all', 'Peer: PJSIP/101', 'PeerStatus: Reachable']);
        if (action === 'login') {
          if (get(a, 'Username') === 'aps' && get(a, 'Secret') === (opts.secret ?? 'amipass')) {
            send(sock, ['Response: Success', ...idLine, 'Message: Authentication accepted']);
            send(sock, ['Event: FullyBooted', 'Privilege: system,all', 'Uptime: 1234', 'LastReload: 1234', 'Status: Fully Booted']);
          } else {
            send(sock, ['Response: Error', ...idLine, 'Message: Authentication failed']);
            sock.end();
          }
        } else if (action === 'logoff') {
          send(sock, ['Response: Goodbye', ...idLine, 'Message: Thanks for all the fish.']);
          sock.end();
        } else {
          const list = opts.events?.(a) ?? null;
          if (list) {
            send(sock, ['Response: Success', ...idLine, 'EventList: start', 'Message: the list follows']);
            for (const e of list) send(sock, [e[0], ...idLine, ...e.slice(1)]);
            send(sock, [`Event: ${get(a, 'Action')}Complete`, ...idLine, 'EventList: Complete', `ListItems: ${list.length}`]);
          } else {
            const r = opts.reply ? opts.reply(a) : ['Response: Success', 'Message: NOTIFY sent'];
            if (r !== null) send(sock, [r[0], ...idLine, ...r.slice(1)]);
          }
        }
      }
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  return {
    port: (srv.address() as net.AddressInfo).port,
    actions,
    /** the actions other than Login and Logoff, without ActionID */
    recorded: () => actions.filter((a) => !['login', 'logoff'].includes(get(a, 'Action')!.toLowerCase())).map((a) => a.filter(([k]) => k !== 'ActionID')),
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        srv.close(() => r());
      }),
  };
}

// ------------------------------------------------------------------ FastAGI

/** res_agi.c parse_args: how Asterisk splits a command line into words. */
export function asteriskParseArgs(s: string): string[] {
  const argv: string[] = [];
  let cur: string[] | null = null;
  let quoted = false;
  let escaped = false;
  let whitespace = true;
  for (const ch of s) {
    if (ch === '"' && !escaped) {
      quoted = !quoted;
      if (quoted && whitespace) {
        cur = [];
        argv.push('');
        whitespace = false;
      }
      escaped = false;
      continue;
    }
    if ((ch === ' ' || ch === '\t') && !quoted && !escaped) {
      whitespace = true;
      if (cur) argv[argv.length - 1] = cur.join('');
      cur = null;
      continue;
    }
    if (ch === '\\' && !escaped) {
      escaped = true;
      continue;
    }
    if (whitespace) {
      cur = [];
      argv.push('');
      whitespace = false;
    }
    cur!.push(ch);
    argv[argv.length - 1] = cur!.join('');
    escaped = false;
  }
  return argv;
}

export interface AgiCallOptions {
  /** the dialplan's AGI() arguments after the URL: PIN, extension[, MAC] */
  args: string[];
  /** the PJSIP endpoint the call comes from (the unprov account) */
  endpoint: string;
  /** caller ID number; default the endpoint */
  callerid?: string;
  script?: string;
  /** channel variables Asterisk knows before the call (e.g. CHANNEL(pjsip,remote_addr)) */
  vars?: Record<string, string>;
  /** write HANGUP right after the environment */
  hangupEarly?: boolean;
}

export interface AgiCallResult {
  /** channel variables after the call, as the dialplan would read them */
  vars: Map<string, string>;
  /** command lines the FastAGI server sent */
  commands: string[];
  /** every byte Asterisk wrote, for leak checks */
  sent: string;
}

/** One AGI(agi://127.0.0.1:port/register,…) call as Asterisk 20 makes it; resolves when the server closes. */
export async function agiCall(port: number, o: AgiCallOptions, ms = 10_000): Promise<AgiCallResult> {
  const sock = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => resolve(s));
    s.once('error', reject);
  });
  const vars = new Map<string, string>(Object.entries(o.vars ?? {}));
  const commands: string[] = [];
  const script = o.script ?? 'register';
  const env = [
    'agi_network: yes',
    `agi_network_script: ${script}`,
    `agi_request: agi://127.0.0.1:${port}/${script}`,
    `agi_channel: PJSIP/${o.endpoint}-0000002a`,
    'agi_language: en',
    'agi_type: PJSIP',
    'agi_uniqueid: 1732621300.42',
    'agi_version: 20.10.0',
    `agi_callerid: ${o.callerid ?? o.endpoint}`,
    'agi_calleridname: UNPROV',
    'agi_callingpres: 0',
    'agi_callingani2: 0',
    'agi_callington: 0',
    'agi_callingtns: 0',
    'agi_dnid: 1',
    'agi_rdnis: unknown',
    'agi_context: aps-unprov',
    'agi_extension: s',
    'agi_priority: 9',
    'agi_enhanced: 0.0',
    'agi_accountcode: ',
    'agi_threadid: 140245091264064',
    ...o.args.map((a, i) => `agi_arg_${i + 1}: ${a}`),
  ];
  let sent = env.join('\n') + '\n\n';
  sock.write(sent);
  if (o.hangupEarly) {
    sock.write('HANGUP\n');
    sent += 'HANGUP\n';
  }
  sock.setEncoding('utf8');
  let buf = '';
  let dead = o.hangupEarly ?? false;
  return new Promise<AgiCallResult>((resolve, reject) => {
    const t = setTimeout(() => {
      sock.destroy();
      reject(new Error(`the FastAGI server did not end the call within ${ms} ms; commands: ${commands.join(' | ')}`));
    }, ms);
    const finish = () => {
      clearTimeout(t);
      resolve({ vars, commands, sent });
    };
    sock.on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        commands.push(line);
        const argv = asteriskParseArgs(line);
        const verb = argv.slice(0, 2).join(' ').toUpperCase();
        let answer: string;
        if (verb === 'SET VARIABLE') {
          if (argv[3] !== undefined) vars.set(argv[2], argv[3]);
          answer = '200 result=1';
        } else if (verb === 'GET VARIABLE') {
          answer = argv.length !== 3 ? '520 Invalid command syntax.  Proper usage not available.' : vars.has(argv[2]) ? `200 result=1 (${vars.get(argv[2])})` : '200 result=0';
        } else if (argv[0]?.toUpperCase() === 'VERBOSE') {
          answer = '200 result=1';
        } else if (dead) {
          answer = '511 Command Not Permitted on a dead channel or intercept routine';
        } else {
          answer = '510 Invalid or unknown command';
        }
        sock.write(answer + '\n');
        sent += answer + '\n';
      }
    });
    sock.on('end', () => {
      sock.end();
      finish();
    });
    sock.on('close', finish);
    sock.on('error', () => finish());
  });
}
