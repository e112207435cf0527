/** The evidence files of vendors/<id>/samples/*.tsv: a header line, tab-separated rows, `#` comments; a value may carry bytes as \xNN (binary DHCP options, NUL-terminated classes). */
import fs from 'node:fs';

export function readTsv(file: string): Record<string, string>[] {
  if (!fs.existsSync(file)) return [];
  const [head, ...rows] = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.trim() && !l.startsWith('#'));
  const cols = head.split('\t');
  const unescape = (v: string) => v.replace(/\\x([0-9a-fA-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
  return rows.map((r) => Object.fromEntries(r.split('\t').map((v, i) => [cols[i], unescape(v)])));
}
