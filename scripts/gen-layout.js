// Generates src/codecs/generated.ts, the TypeScript mirror of bpf/l3iso.h:
//   - struct sizes and field offsets, and enum values, from the BTF that
//     clang -target bpf emits for the header (the very compiler and target
//     the programs are built with), read with bpftool; every struct the
//     compiled program objects also carry must have the same layout there;
//   - #define values and the counter tables (L3_TRAFFIC, L3_REFUSALS,
//     L3_DROPS X-macros), which BTF does not carry, from a host C probe.
// Every `struct NAME {` and `enum NAME {` of the header is picked up, so a
// new struct needs no change here.
//
//   node scripts/gen-layout.js           write the file if it changed
//   node scripts/gen-layout.js --check   exit 1 if the committed file is stale
//   node scripts/gen-layout.js --print   print the generated text
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const ROOT = path.resolve(__dirname, '..');
const BPF = path.join(ROOT, 'bpf');
const HEADER = path.join(BPF, 'l3iso.h');
const OUT = path.join(ROOT, 'src', 'codecs', 'generated.ts');

/** The X-macro tables and the names of their columns. */
const TABLES = {
  L3_TRAFFIC: ['field', 'group', 'always', 'help'],
  L3_REFUSALS: ['id', 'label', 'help'],
  L3_DROPS: ['id', 'label', 'help'],
};

function run(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...opts });
}

function archInclude() {
  return `/usr/include/${run('gcc', ['-dumpmachine']).trim()}`;
}

/** Names of the structs and enums the header defines (not merely uses). */
function headerNames(text) {
  const names = (re) => [...text.matchAll(re)].map((m) => m[1]);
  return {
    structs: names(/^struct\s+(\w+)\s*\{/gm),
    enums: names(/^enum\s+(\w+)\s*\{/gm),
  };
}

// ---- BTF -------------------------------------------------------------------

function btfOf(obj) {
  return JSON.parse(run('bpftool', ['-j', 'btf', 'dump', 'file', obj])).types;
}

/** One global of every struct and enum, so each reaches the object's BTF. */
function compileProbe(tmp, names) {
  const src = path.join(tmp, 'layout.bpf.c');
  const obj = path.join(tmp, 'layout.bpf.o');
  const lines = ['#include "l3iso.h"'];
  for (const s of names.structs) lines.push(`struct ${s} l3_probe_s_${s};`);
  for (const e of names.enums) lines.push(`enum ${e} l3_probe_e_${e};`);
  fs.writeFileSync(src, lines.join('\n') + '\n');
  run('clang', [
    '-O2',
    '-g',
    '-Wall',
    '-Werror',
    '-target',
    'bpf',
    '-I',
    BPF,
    '-I',
    archInclude(),
    '-c',
    src,
    '-o',
    obj,
  ]);
  return btfOf(obj);
}

function typeIndex(types) {
  return new Map(types.map((t) => [t.id, t]));
}

function sizeOf(byId, id) {
  const t = byId.get(id);
  switch (t.kind) {
    case 'INT':
    case 'STRUCT':
    case 'UNION':
    case 'ENUM':
    case 'ENUM64':
      return t.size;
    case 'PTR':
      return 8;
    case 'TYPEDEF':
    case 'CONST':
    case 'VOLATILE':
    case 'RESTRICT':
    case 'TYPE_TAG':
      return sizeOf(byId, t.type_id);
    case 'ARRAY':
      return t.nr_elems * sizeOf(byId, t.type_id);
    default:
      throw new Error(`gen-layout: no size for BTF kind ${t.kind}`);
  }
}

function structLayouts(types, wanted) {
  const byId = typeIndex(types);
  const out = {};
  for (const t of types) {
    if (t.kind !== 'STRUCT' || !wanted.includes(t.name)) continue;
    const fields = {};
    for (const m of t.members) {
      if (!m.name) throw new Error(`gen-layout: struct ${t.name} has an anonymous member`);
      if (m.bitfield_size) throw new Error(`gen-layout: ${t.name}.${m.name} is a bitfield`);
      fields[m.name] = { offset: m.bits_offset / 8, size: sizeOf(byId, m.type_id) };
    }
    out[t.name] = { size: t.size, fields };
  }
  return out;
}

function enumValues(types, wanted) {
  const out = {};
  for (const t of types) {
    if ((t.kind === 'ENUM' || t.kind === 'ENUM64') && wanted.includes(t.name))
      out[t.name] = t.values.map((v) => ({ name: v.name, value: Number(v.val) }));
  }
  return out;
}

/** The program objects were built from the same header: same layouts. */
function checkObjects(layouts) {
  for (const f of fs.readdirSync(BPF).filter((n) => n.endsWith('.bpf.o'))) {
    const theirs = structLayouts(btfOf(path.join(BPF, f)), Object.keys(layouts));
    for (const [name, l] of Object.entries(theirs)) {
      if (JSON.stringify(l) !== JSON.stringify(layouts[name]))
        throw new Error(`gen-layout: struct ${name} in bpf/${f} differs from bpf/l3iso.h's`);
    }
  }
}

// ---- #defines and tables (host probe) ----------------------------------------

/** Object-like L3_* macros of the header (as the preprocessor sees them),
 * in the header's order. */
function macroNames() {
  const text = run('gcc', ['-dM', '-E', '-I', BPF, HEADER]);
  const defined = new Set([...text.matchAll(/^#define (L3_\w+) (.+)$/gm)].map((m) => m[1]));
  const header = fs.readFileSync(HEADER, 'utf8');
  const order = [...header.matchAll(/^#define (L3_\w+)[ \t]/gm)].map((m) => m[1]);
  return [...new Set(order)].filter((n) => defined.has(n));
}

function hostProbeSource(macros) {
  const body = [];
  const out = (s) => body.push(`  fputs(${JSON.stringify(s)}, stdout);`);
  out('{"defines":{');
  macros.forEach((m, i) => {
    out(`${i ? ',' : ''}"${m}":`);
    body.push(`  printf("\\"%llu\\"", (unsigned long long)(${m}));`);
  });
  out('}');
  for (const [table, cols] of Object.entries(TABLES)) {
    out(`,"${table}":[`);
    body.push('  first = 1;');
    const params = cols.join(', ');
    const row = cols
      .map((c, i) => {
        const sep = i ? ',' : '{';
        if (c === 'field' || c === 'id') return `str("${sep}\\"${c}\\":", #${c});`;
        if (c === 'always') return `printf("${sep}\\"${c}\\":%s", (${c}) ? "true" : "false");`;
        return `str("${sep}\\"${c}\\":", ${c});`;
      })
      .join(' ');
    body.push(
      `#define ROW(${params}) do { if (!first) fputs(",", stdout); first = 0; ${row} fputs("}", stdout); } while (0);`,
    );
    body.push(`  ${table}(ROW)`);
    body.push('#undef ROW');
    out(']');
  }
  out('}\n');
  return `#include <stdio.h>
#include "l3iso.h"

/* Prints key then s as a JSON string. */
static void str(const char *key, const char *s)
{
  fputs(key, stdout);
  putchar('"');
  for (; *s; s++) {
    if (*s == '"' || *s == '\\\\') putchar('\\\\');
    putchar(*s);
  }
  putchar('"');
}

int main(void)
{
  int first;
${body.join('\n')}
  (void)first;
  return 0;
}
`;
}

function hostProbe(tmp) {
  const src = path.join(tmp, 'defines.c');
  const exe = path.join(tmp, 'defines');
  fs.writeFileSync(src, hostProbeSource(macroNames()));
  run('gcc', ['-std=gnu11', '-Wall', '-Werror', '-I', BPF, '-o', exe, src]);
  return JSON.parse(run(exe, []));
}

// ---- TypeScript ----------------------------------------------------------------

const pascal = (s) =>
  s
    .toLowerCase()
    .split('_')
    .filter(Boolean)
    .map((w) => w[0].toUpperCase() + w.slice(1))
    .join('');
const camel = (s) => {
  const p = pascal(s);
  return p[0].toLowerCase() + p.slice(1);
};

function commonPrefix(names) {
  let p = names[0] ?? '';
  for (const n of names)
    while (!n.startsWith(p)) p = p.slice(0, p.lastIndexOf('_', p.length - 2) + 1);
  return p;
}

function tsConstant(name, text) {
  const v = BigInt(text);
  return v > BigInt(Number.MAX_SAFE_INTEGER)
    ? `export const ${name} = 0x${v.toString(16)}n;`
    : `export const ${name} = ${v};`;
}

/** enum l3_reason -> `enum Reason { BindForeign = 0, ... }`; a trailing
 * <prefix>MAX (the count) becomes a constant of its own. */
function tsEnum(cName, values) {
  const prefix = commonPrefix(values.map((v) => v.name));
  const members = values.filter((v) => v.name !== `${prefix}MAX`);
  const max = values.find((v) => v.name === `${prefix}MAX`);
  const lines = [`/** enum ${cName} */`, `export enum ${pascal(cName.replace(/^l3_/, ''))} {`];
  for (const v of members) lines.push(`  ${pascal(v.name.slice(prefix.length))} = ${v.value},`);
  lines.push('}');
  if (max) lines.push(`export const ${max.name} = ${max.value};`);
  return lines.join('\n');
}

function tsTable(name, rows, enumValuesByName, enumPrefix) {
  const out = rows.map((r) => {
    const row = { ...r };
    if (r.field) row.name = camel(r.field);
    if (r.id) {
      const slot = enumValuesByName.get(enumPrefix + r.id);
      if (slot === undefined) throw new Error(`gen-layout: ${enumPrefix}${r.id} is not in BTF`);
      row.slot = slot;
    }
    return row;
  });
  return `export const ${name} = [\n${out.map((r) => `  ${JSON.stringify(r)},\n`).join('')}] as const;`;
}

/** One line per field, so a diff of the file reads like one of the header. */
function tsStruct([name, s]) {
  const fields = Object.entries(s.fields)
    .map(([f, l]) => `      ${f}: { offset: ${l.offset}, size: ${l.size} },\n`)
    .join('');
  return `  ${name}: {\n    size: ${s.size},\n    fields: {\n${fields}    },\n  },\n`;
}

function render(names, layouts, enums, probe) {
  const parts = [
    '/*',
    ' * GENERATED by scripts/gen-layout.js from bpf/l3iso.h: do not edit, run',
    ' * `npm run build` (test/unit/layout.test.ts fails while this is stale).',
    ' * Sizes, offsets and enum values: BTF of the header built with clang',
    ' * -target bpf. #defines and counter tables: the header through the host',
    ' * preprocessor.',
    ' */',
    '',
    '// ---- #define',
    ...Object.entries(probe.defines).map(([n, v]) => tsConstant(n, v)),
    '',
    '// ---- enums',
  ];
  const byName = new Map();
  for (const e of names.enums) {
    if (!enums[e]) throw new Error(`gen-layout: enum ${e} did not reach BTF`);
    parts.push(tsEnum(e, enums[e]));
    for (const v of enums[e]) byName.set(v.name, v.value);
  }
  parts.push('', '// ---- counter tables (X-macros)');
  parts.push(
    '/** L3_TRAFFIC: per-CPU counters of struct l3_cell_stats, in field order. */',
    tsTable('TRAFFIC_COUNTERS', probe.L3_TRAFFIC, byName, ''),
    '/** L3_REFUSALS: slots of l3_cell_denials.refused (enum l3_reason). */',
    tsTable('REFUSAL_COUNTERS', probe.L3_REFUSALS, byName, 'L3_R_'),
    '/** L3_DROPS: slots of l3_cell_denials.dropped (enum l3_drop). */',
    tsTable('DROP_COUNTERS', probe.L3_DROPS, byName, 'L3_D_'),
    '',
    '// ---- structs',
    '/** Every struct of the header; field names are the C names. */',
  );
  const ordered = {};
  for (const s of names.structs) {
    if (!layouts[s]) throw new Error(`gen-layout: struct ${s} did not reach BTF`);
    ordered[s] = layouts[s];
  }
  parts.push(
    `export const LAYOUT = {\n${Object.entries(ordered).map(tsStruct).join('')}} as const;`,
  );
  return parts.join('\n') + '\n';
}

async function generate() {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'l3iso-gen-'));
  try {
    const names = headerNames(fs.readFileSync(HEADER, 'utf8'));
    const types = compileProbe(tmp, names);
    const layouts = structLayouts(types, names.structs);
    checkObjects(layouts);
    const text = render(names, layouts, enumValues(types, names.enums), hostProbe(tmp));
    const prettier = require('prettier');
    const config = (await prettier.resolveConfig(OUT)) ?? {};
    return prettier.format(text, { ...config, filepath: OUT });
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

async function main() {
  const mode = process.argv[2];
  const text = await generate();
  const old = fs.existsSync(OUT) ? fs.readFileSync(OUT, 'utf8') : '';
  if (mode === '--print') process.stdout.write(text);
  else if (mode === '--check') {
    if (text !== old) {
      console.error(
        `${path.relative(ROOT, OUT)} is not in step with bpf/l3iso.h: run \`npm run build\``,
      );
      process.exit(1);
    }
  } else if (text !== old) {
    fs.writeFileSync(OUT, text);
    console.error(`gen-layout: wrote ${path.relative(ROOT, OUT)}`);
  }
}

main().catch((err) => {
  console.error(err.stderr ? `${err.message}\n${err.stderr}` : err.message);
  process.exit(1);
});
