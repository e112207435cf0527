/**
 * The layers of src/, bottom to top (README, Development). A module may import from its own
 * layer or a lower one, never from a higher one; no circles anywhere; only daemon.ts imports
 * app.ts; only store/ speaks SQL; nothing outside test/ imports test/. `npm run check:deps`.
 */
const LAYERS = [
  { name: 'base', path: '^src/(errors|log|mac)\\.ts$|^src/(net|wire)/' },
  { name: 'config', path: '^src/config/' },
  { name: 'vendors', path: '^src/vendors/' },
  { name: 'store', path: '^src/store/' },
  { name: 'domain', path: '^src/(inventory|render|provisioning|pin|dhcp|firmware)/' },
  { name: 'servers', path: '^src/servers/' },
  { name: 'app', path: '^src/app\\.ts$' },
  { name: 'entry', path: '^src/daemon\\.ts$|^src/cli/' },
];

const upward = LAYERS.slice(0, -1).map((layer, i) => ({
  name: `no-upward-from-${layer.name}`,
  comment: `${layer.name} sits below ${LAYERS.slice(i + 1).map((l) => l.name).join(', ')}: it must not import them`,
  severity: 'error',
  from: { path: layer.path },
  to: { path: LAYERS.slice(i + 1).map((l) => `(?:${l.path})`).join('|') },
}));

module.exports = {
  forbidden: [
    { name: 'no-circular', comment: 'import circles make the layers meaningless', severity: 'error', from: {}, to: { circular: true } },
    ...upward,
    {
      name: 'app-only-from-daemon',
      comment: 'app.ts is wiring; only apsd (daemon.ts) builds it',
      severity: 'error',
      from: { pathNot: '^src/daemon\\.ts$' },
      to: { path: '^src/app\\.ts$' },
    },
    {
      name: 'sql-only-in-store',
      comment: 'the store is the only module that touches SQLite',
      severity: 'error',
      from: { path: '^src/', pathNot: '^src/store/' },
      to: { path: 'node_modules/better-sqlite3' },
    },
    {
      name: 'no-test-from-product',
      comment: 'src/ and scripts/ stand without test/',
      severity: 'error',
      from: { path: '^(src|scripts)/' },
      to: { path: '^test/' },
    },
    {
      name: 'no-unresolvable',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^dist/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js', '.mjs'] },
  },
};
