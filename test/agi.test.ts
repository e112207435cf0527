/**
 * FastAGI server against a client that speaks as Asterisk's res_agi does: recorded session
 * transcripts (test/fixtures/agi/*.txt) replayed byte for byte, and a small Asterisk
 * emulator that splits commands with res_agi's own parse_args rules and keeps the channel
 * variables, so a test can say what the dialplan would see in ${APS_RESULT}.
 */
import { rejection } from './support/rejection.js';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ApsError } from '../src/errors.js';
import { memoryLogger } from '../src/log.js';
import { createAgiServer, parseAgiArgs, parseAgiResponse, quoteAgiArg, type AgiServer, type AgiServerOptions, type AgiSession } from '../src/wire/agi.js';
import { asteriskParseArgs } from './support/pin-peers.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const FIX = path.join(here, 'fixtures', 'agi');

// ------------------------------------------------------------------ helpers

const servers: AgiServer[] = [];
async function startServer(handle: (s: AgiSession) => Promise<void>, extra: Partial<AgiServerOptions> = {}) {
  const log = memoryLogger('debug');
  const srv = createAgiServer({ listen: { host: '127.0.0.1', port: 0 }, log, handle, ...extra });
  await srv.start();
  servers.push(srv);
  return { srv, log, port: srv.addresses()[0].port };
}
test.after.each(async () => {
  while (servers.length) await servers.pop()!.close({ drainMs: 50 });
});

/** Lines from a socket, one at a time; null at EOF. Every wait is bounded. */
function lines(sock: net.Socket) {
  let buf = '';
  const queue: (string | null)[] = [];
  let wake: (() => void) | null = null;
  sock.setEncoding('utf8');
  sock.on('data', (d: string) => {
    buf += d;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      queue.push(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
    wake?.();
  });
  const eof = () => {
    queue.push(null);
    wake?.();
  };
  sock.on('end', eof);
  sock.on('close', eof);
  sock.on('error', () => undefined);
  return {
    async next(ms = 2000): Promise<string | null | 'timeout'> {
      const deadline = Date.now() + ms;
      while (!queue.length) {
        const left = deadline - Date.now();
        if (left <= 0) return 'timeout';
        await new Promise<void>((r) => {
          const t = setTimeout(r, left);
          wake = () => {
            clearTimeout(t);
            r();
          };
        });
        wake = null;
      }
      return queue.shift()!;
    },
  };
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => resolve(s));
    s.once('error', reject);
  });
}

interface Step {
  dir: 'A' | 'S';
  text: string;
}
function transcript(name: string): Step[] {
  return fs
    .readFileSync(path.join(FIX, name), 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('A:') || l.startsWith('S:'))
    .map((l) => ({ dir: l[0] as 'A' | 'S', text: l.length > 3 ? l.slice(3) : '' }));
}

/** Plays Asterisk's side of a transcript: writes the A lines, checks each S line the server sends. */
async function replay(port: number, steps: Step[]): Promise<{ after: (string | 'timeout')[] }> {
  const sock = await connect(port);
  const rd = lines(sock);
  try {
    for (const st of steps) {
      if (st.dir === 'A') sock.write(st.text + '\n');
      else assert.is(await rd.next(), st.text, 'the server sends the recorded command');
    }
    // after the last step the server must close without sending anything more
    const after: (string | 'timeout')[] = [];
    for (let i = 0; i < 5; i++) {
      const l = await rd.next();
      if (l === null) break;
      after.push(l);
    }
    return { after };
  } finally {
    sock.destroy();
  }
}

interface EmuOptions {
  args?: string[];
  script?: string;
  /** write HANGUP after answering this many commands */
  hangupAfter?: number;
  /** on this command verb: write HANGUP and never answer */
  hangupInsteadOfAnswer?: string;
  /** on this command verb: close the connection */
  closeOn?: string;
  /** the channel is already dead: commands not allowed on a dead channel answer 511 */
  dead?: boolean;
  /** send the usage text without a final line break, as res_agi does with some XML docs */
  glueUsage?: boolean;
}

/** A small Asterisk: environment block, then commands answered as res_agi answers them. */
async function emulate(port: number, o: EmuOptions = {}) {
  const sock = await connect(port);
  const rd = lines(sock);
  const vars = new Map<string, string>([['CHANNEL(pjsip,remote_addr)', '10.20.30.41:5060']]);
  const commands: string[] = [];
  const env = [
    'agi_network: yes',
    `agi_network_script: ${o.script ?? 'register'}`,
    'agi_request: agi://127.0.0.1:4573/register',
    'agi_channel: PJSIP/aps-0004f2a1b2c3-00000009',
    'agi_language: en',
    'agi_type: PJSIP',
    'agi_uniqueid: 1732621300.21',
    'agi_version: 20.10.0',
    'agi_callerid: aps-0004f2a1b2c3',
    'agi_calleridname: unprovisioned',
    'agi_callingpres: 0',
    'agi_callingani2: 0',
    'agi_callington: 0',
    'agi_callingtns: 0',
    'agi_dnid: *99',
    'agi_rdnis: unknown',
    'agi_context: aps-unprov',
    'agi_extension: *99',
    'agi_priority: 4',
    'agi_enhanced: 0.0',
    'agi_accountcode: ',
    'agi_threadid: 140245091264064',
    ...(o.args ?? ['482913', '101']).map((a, i) => `agi_arg_${i + 1}: ${a}`),
  ];
  for (const l of env) sock.write(l + '\n');
  sock.write('\n');
  let answered = 0;
  let dead = o.dead ?? false;
  const done = (async () => {
    for (let i = 0; i < 100; i++) {
      const line = await rd.next(5000);
      if (line === null || line === 'timeout') return;
      commands.push(line);
      const argv = asteriskParseArgs(line);
      const verb = argv.slice(0, 2).join(' ').toUpperCase();
      if (o.closeOn && verb.startsWith(o.closeOn)) {
        sock.destroy();
        return;
      }
      if (o.hangupInsteadOfAnswer && verb.startsWith(o.hangupInsteadOfAnswer)) {
        sock.write('HANGUP\n');
        dead = true;
        continue;
      }
      let answer: string;
      if (verb === 'SET VARIABLE') {
        if (argv[3] !== undefined) vars.set(argv[2], argv[3]); // no usage check in res_agi
        answer = '200 result=1';
      } else if (verb === 'GET VARIABLE') {
        if (argv.length !== 3) {
          answer = '520-Invalid command syntax.  Proper usage follows:\n Usage: GET VARIABLE <variablename>\n    Returns 0 if variablename is not set.' + (o.glueUsage ? '' : '\n') + '520 End of proper usage.';
        } else answer = vars.has(argv[2]) ? `200 result=1 (${vars.get(argv[2])})` : '200 result=0';
      } else if (argv[0]?.toUpperCase() === 'VERBOSE') {
        answer = '200 result=1';
      } else if (argv[0]?.toUpperCase() === 'ANSWER') {
        answer = dead ? '511 Command Not Permitted on a dead channel or intercept routine' : '200 result=0';
      } else {
        answer = '510 Invalid or unknown command';
      }
      sock.write(answer + '\n');
      answered++;
      if (o.hangupAfter !== undefined && answered === o.hangupAfter) {
        sock.write('HANGUP\n');
        dead = true;
      }
    }
  })();
  return { sock, vars, commands, done };
}


function waitFor(cond: () => boolean, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const tick = () => {
      if (cond()) return resolve();
      if (Date.now() > deadline) return reject(new Error('condition not met in time'));
      setTimeout(tick, 5);
    };
    tick();
  });
}

// -------------------------------------------------------------------- tests

test('a register call from the dialplan reaches apsd with script, PIN and extension, and each answer is read as Asterisk meant it', async () => {
  const seen: Record<string, unknown> = {};
  const { port } = await startServer(async (s) => {
    seen.script = s.script;
    seen.args = s.args;
    seen.channel = s.env.agi_channel;
    seen.callerid = s.env.agi_callerid;
    seen.accountcode = s.env.agi_accountcode;
    seen.verbose = await s.verbose(`aps: register from ${s.env.agi_channel}`);
    seen.peer = await s.getVariable('CHANNEL(pjsip,remote_addr)');
    seen.unknown = await s.command('FROB NICATE');
    seen.usage = await s.command('GET VARIABLE');
    await s.setVariable('APS_MESSAGE', 'Extension 101 assigned to "Alice Smith"');
    seen.set = await s.setVariable('APS_RESULT', 'ok');
  });
  const { after } = await replay(port, transcript('register-session.txt'));
  assert.equal(after, [], 'nothing is sent after the last command; the server closes');
  assert.equal(seen, {
    script: 'register',
    args: ['482913', '101'],
    channel: 'PJSIP/aps-0004f2a1b2c3-00000007',
    callerid: 'aps-0004f2a1b2c3',
    accountcode: '',
    verbose: { code: 200, result: '1', data: '', extra: '' },
    peer: '10.20.30.41:5060',
    unknown: { code: 510, result: '', data: 'Invalid or unknown command', extra: '' },
    usage: {
      code: 520,
      result: '',
      data: 'Returns 0 if variablename is not set. Returns 1 if variablename is set and returns the variable in parentheses.\nExample return code: 200 result=1 (testvariable)',
      extra: '',
    },
    set: { code: 200, result: '1', data: '', extra: '' },
  });
});

test('a hangup during the call: the command in flight still gets its answer, and nothing more is sent', async () => {
  const seen: Record<string, unknown> = {};
  const { port } = await startServer(async (s) => {
    seen.exten = s.args[1];
    const r = await s.verbose(`aps: register from ${s.env.agi_channel}`);
    seen.code = r.code;
    seen.hungUp = s.hungUp;
    seen.aborted = s.signal.aborted;
    const e = await rejection(s.setVariable('APS_RESULT', 'ok'));
    seen.reason = e.context.reason;
  });
  const { after } = await replay(port, transcript('hangup-session.txt'));
  assert.equal(after, []);
  assert.equal(seen, { exten: '102', code: 200, hungUp: true, aborted: true, reason: 'hangup' });
});

test('APS_RESULT reaches the dialplan exactly as set: quotes, backslashes, blanks, empty, line breaks', async () => {
  const values = ['ok', 'He said "hi" \\ bye', '', 'two  blanks', 'C:\\phones\\"x"\\', 'line1\nline2', 'ünïcödé ☎'];
  const { port } = await startServer(async (s) => {
    for (const [i, v] of values.entries()) await s.setVariable(`V${i}`, v);
  });
  const emu = await emulate(port);
  await emu.done;
  values.forEach((v, i) => assert.is(emu.vars.get(`V${i}`), v.replace('\n', ' '), `V${i}`));
  emu.sock.destroy();
});

test('quoting and splitting of AGI arguments agree with res_agi', () => {
  for (const v of ['a', 'a b', '"', '\\', '\\"', 'x\\y"z', '']) {
    assert.equal(parseAgiArgs(`SET VARIABLE X ${quoteAgiArg(v)}`), ['SET', 'VARIABLE', 'X', v]);
    assert.equal(asteriskParseArgs(`SET VARIABLE X ${quoteAgiArg(v)}`), ['SET', 'VARIABLE', 'X', v]);
  }
  assert.equal(parseAgiResponse('200 result=1 (speech) endpos=1234 results=0'), { code: 200, result: '1', data: 'speech', extra: 'endpos=1234 results=0' });
  assert.equal(parseAgiResponse('200 result=-1'), { code: 200, result: '-1', data: '', extra: '' });
  assert.equal(parseAgiResponse('200 result=1 (a (b) c)'), { code: 200, result: '1', data: 'a (b) c', extra: '' });
  assert.is(parseAgiResponse('HANGUP'), undefined);
});

test('a HANGUP between commands: the session notices and sends no further command', async () => {
  let reason: unknown;
  const { port } = await startServer(async (s) => {
    await s.verbose('first');
    await waitFor(() => s.hungUp);
    assert.ok(s.signal.aborted);
    reason = (await rejection(s.setVariable('APS_RESULT', 'late'))).context.reason;
    reason = `${reason}/${(await rejection(s.verbose('later'))).context.reason}`;
  });
  const emu = await emulate(port, { hangupAfter: 1 });
  await emu.done;
  assert.is(reason, 'hangup/hangup');
  assert.equal(emu.commands, ['VERBOSE "first" 1']);
  assert.not.ok(emu.vars.has('APS_RESULT'));
});

test('a command left unanswered after HANGUP is rejected after the grace time, not left hanging', async () => {
  let result: unknown;
  const started = Date.now();
  const { port } = await startServer(
    async (s) => {
      const e = await rejection(s.getVariable('CHANNEL(pjsip,remote_addr)'));
      result = [e.code, e.context.reason, s.hungUp];
    },
    { hangupGraceMs: 80 },
  );
  const emu = await emulate(port, { hangupInsteadOfAnswer: 'GET VARIABLE' });
  await emu.done;
  assert.equal(result, ['APS_ERR_PROTOCOL', 'hangup', true]);
  assert.ok(Date.now() - started < 1500);
});

test('Asterisk closing the connection rejects the waiting command, and the next call is served normally', async () => {
  const reasons: unknown[] = [];
  const { port, srv } = await startServer(async (s) => {
    try {
      await s.verbose('hello');
      await s.setVariable('APS_RESULT', 'ok');
      reasons.push('ok');
    } catch (e) {
      reasons.push((e as ApsError).context.reason);
    }
  });
  const a = await emulate(port, { closeOn: 'SET VARIABLE' });
  await a.done;
  await waitFor(() => reasons.length === 1);
  const b = await emulate(port);
  await b.done;
  assert.equal(reasons, ['closed', 'ok']);
  assert.is(b.vars.get('APS_RESULT'), 'ok');
  assert.is(srv.stats().sessions, 2);
});

test('a usage error is answered 520 with its text, also when Asterisk glues the end line to the text', async () => {
  const got: unknown[] = [];
  const { port } = await startServer(async (s) => {
    got.push((await s.command('GET VARIABLE')).data);
    got.push((await s.setVariable('AFTER', 'still fine')).code);
  });
  const emu = await emulate(port, { glueUsage: true });
  await emu.done;
  assert.equal(got, ['Usage: GET VARIABLE <variablename>\n    Returns 0 if variablename is not set.', 200]);
  assert.is(emu.vars.get('AFTER'), 'still fine');
});

test('a dead channel (511) marks the session hung up', async () => {
  let seen: unknown;
  const { port } = await startServer(async (s) => {
    const r = await s.command('ANSWER');
    seen = [r.code, s.hungUp];
  });
  const emu = await emulate(port, { dead: true });
  await emu.done;
  assert.equal(seen, [511, true]);
});

test('parameters in the script path are read (register?mac=…), and an unset variable reads as undefined', async () => {
  let seen: unknown;
  const { port } = await startServer(async (s) => {
    seen = [s.script, s.params, s.args, await s.getVariable('NOT_SET')];
  });
  const emu = await emulate(port, { script: 'register?mac=0004f2a1b2c3&note=a%20b', args: ['1234', '', '0004F2A1B2C3'] });
  await emu.done;
  assert.equal(seen, ['register', { mac: '0004f2a1b2c3', note: 'a b' }, ['1234', '', '0004F2A1B2C3'], undefined]);
});

test('malformed input ends that session, never the server', async () => {
  let calls = 0;
  const { port, srv } = await startServer(
    async (s) => {
      calls++;
      if (s.script === 'reply-garbage') await rejection(s.verbose('x'));
    },
    { maxLineBytes: 8192, maxEnvLines: 256 },
  );
  const cases: string[] = [
    'this is not an environment line\n\n',
    'agi_network: yes\n' + 'x'.repeat(9000), // a line past 8 KB without a line break
    Array.from({ length: 300 }, (_, i) => `agi_x${i}: y\n`).join('') + '\n',
    '\n', // an empty environment
    '\u0000\u0001\u0002 binary\n\n',
  ];
  for (const c of cases) {
    const sock = await connect(port);
    const rd = lines(sock);
    sock.write(c);
    let l: string | null | 'timeout';
    do l = await rd.next(2000);
    while (l !== null && l !== 'timeout');
    assert.is(l, null, `closed after ${JSON.stringify(c.slice(0, 30))}`);
    sock.destroy();
  }
  // an answer nobody asked for, after a valid environment
  const sock = await connect(port);
  const rd = lines(sock);
  sock.write('agi_network: yes\nagi_network_script: reply-garbage\n\n');
  assert.is(await rd.next(), 'VERBOSE "x" 1');
  sock.write('what is this\n');
  assert.is(await rd.next(), null);
  sock.destroy();
  assert.is(calls, 1, 'the handler ran only for the session with a valid environment');
  assert.is(srv.stats().malformed, 6);
  const emu = await emulate(port);
  await emu.done;
  assert.is(calls, 2, 'and the server still serves');
});

test('a connection that says nothing is dropped after the idle timeout', async () => {
  const { port, log } = await startServer(async () => undefined, { idleTimeoutMs: 80 });
  const sock = await connect(port);
  const rd = lines(sock);
  const t0 = Date.now();
  assert.is(await rd.next(3000), null);
  assert.ok(Date.now() - t0 < 2000);
  assert.ok(log.lines.some((l) => l.includes('no AGI environment in time')));
  sock.destroy();
});

test('a connection that sends no AGI environment is closed after agi_env_timeout, even with a long idle timeout', async () => {
  const { port } = await startServer(async () => undefined, { idleTimeoutMs: 60_000, envTimeoutMs: 150 });
  const sock = await connect(port);
  sock.write('agi_network: yes\n');
  const rd = lines(sock);
  const t0 = Date.now();
  assert.is(await rd.next(3000), null);
  assert.ok(Date.now() - t0 < 1500, `${Date.now() - t0} ms`);
  sock.destroy();
});

test('a command with a line break is refused before it reaches Asterisk', async () => {
  let reason: unknown;
  const { port } = await startServer(async (s) => {
    reason = (await rejection(s.command('NOOP\nEXEC System rm'))).context.reason;
    await s.verbose('fine');
  });
  const emu = await emulate(port);
  await emu.done;
  assert.is(reason, 'usage');
  assert.equal(emu.commands, ['VERBOSE "fine" 1']);
});

test('the PIN never appears in the log, also when the handler fails', async () => {
  const { port, log } = await startServer(async (s) => {
    await s.verbose(`aps: register from ${s.env.agi_channel}`);
    throw new Error('domain failure');
  });
  const steps = transcript('register-session.txt');
  const firstCommand = steps.findIndex((st) => st.dir === 'S');
  await replay(port, steps.slice(0, firstCommand + 2)); // environment, VERBOSE, its answer
  await waitFor(() => log.lines.some((l) => l.includes('agi handler failed')));
  assert.not.ok(log.lines.join('\n').includes('482913'), log.lines.join('\n'));
});

test('close() ends sessions still running and frees the port', async () => {
  let aborted = false;
  const { srv, port } = await startServer(async (s) => {
    await new Promise<void>((r) => s.signal.addEventListener('abort', () => r()));
    aborted = true;
  });
  const emu = await emulate(port);
  await waitFor(() => srv.stats().active === 1);
  const t0 = Date.now();
  await srv.close({ drainMs: 50 });
  assert.ok(Date.now() - t0 < 1000);
  await emu.done;
  await waitFor(() => aborted);
  const err = await new Promise<NodeJS.ErrnoException>((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => resolve(new Error('connected') as NodeJS.ErrnoException));
    s.on('error', resolve);
  });
  assert.is(err.code, 'ECONNREFUSED');
});

test('a port already taken is refused at start with APS_ERR_BIND', async () => {
  const { port } = await startServer(async () => undefined);
  const other = createAgiServer({ listen: { host: '127.0.0.1', port }, log: memoryLogger(), handle: async () => undefined });
  const e = await rejection(other.start());
  assert.is(e.code, 'APS_ERR_BIND');
  assert.is(e.context.key, '[pin] agi_listen');
});

test.run();
