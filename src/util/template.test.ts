/**
 * The Go-template engine against Go's and docker's documented behaviour: named tables of
 * template, data, expected output (or error), then docker's formatter (table/json) and
 * Go's tabwriter.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { GO_JSON, GO_STRING, GO_TYPE, RawJson, goJson, sprintf, tabwrite } from './gofmt.js';
import { formatRows, templateText } from './formatter.js';
import { TemplateError, parseTemplate } from './template.js';

const image = {
  [GO_TYPE]: '*formatter.imageContext',
  ID: '4dd97cefde62',
  Repository: 'ubuntu',
  Tag: 'latest',
  Digest: '<none>',
  CreatedSince: () => '5 days ago',
  Size: '72.9MB',
  Labels: new Map([['com.example.version', '1.0']]),
  Platforms: ['linux/amd64', 'linux/arm64'],
  Empty: [] as string[],
  Count: 3,
  Zero: 0,
  Nil: null,
  Nested: {
    Manifest: { digest: 'sha256:abc', mediaType: 'x/y', manifests: [{ platform: { os: 'linux' } }] },
  },
  Html: '<a&b>',
};

const outputs: Array<[string, string, string]> = [
  // docker's docs: image ls --format
  ['size comparison (docker docs)', '{{.Repository}}:{{.Tag}} {{.Size}}', 'ubuntu:latest 72.9MB'],
  ['ID and repository', '{{.ID}}: {{.Repository}}', '4dd97cefde62: ubuntu'],
  ['a method is called', '{{.CreatedSince}}', '5 days ago'],
  ['nested fields', '{{.Nested.Manifest.digest}}', 'sha256:abc'],
  [
    'JSON keys match Go field names',
    '{{.Nested.Manifest.Digest}} {{.Nested.Manifest.MediaType}}',
    'sha256:abc x/y',
  ],
  ['dot', '{{.Tag | printf "%s!"}}', 'latest!'],
  ['text around actions', 'a {{.Tag}} b\n', 'a latest b\n'],
  ['comment', 'x{{/* a comment */}}y', 'xy'],
  ['trim markers', 'a \n {{- .Tag -}} \n b', 'alatestb'],
  ['trim marker needs a space', '{{-3}}', '-3'],
  ['range over a slice', '{{range .Platforms}}[{{.}}]{{end}}', '[linux/amd64][linux/arm64]'],
  [
    'range with index and element',
    '{{range $i, $p := .Platforms}}{{$i}}:{{$p}} {{end}}',
    '0:linux/amd64 1:linux/arm64 ',
  ],
  [
    'range over a map goes in key order',
    '{{range $k, $v := .Labels}}{{$k}}={{$v}}{{end}}',
    'com.example.version=1.0',
  ],
  [
    'range over an untyped object (a JSON map) goes in key order',
    '{{range $k, $v := .Nested.Manifest}}{{$k}} {{end}}',
    'digest manifests mediaType ',
  ],
  ['range else', '{{range .Empty}}x{{else}}none{{end}}', 'none'],
  ['range over nil runs else', '{{range .Nil}}x{{else}}nil{{end}}', 'nil'],
  ['range over an int', '{{range 3}}{{.}}{{end}}', '012'],
  ['range break', '{{range .Platforms}}{{if eq . "linux/arm64"}}{{break}}{{end}}{{.}}{{end}}', 'linux/amd64'],
  [
    'range continue',
    '{{range .Platforms}}{{if eq . "linux/amd64"}}{{continue}}{{end}}{{.}}{{end}}',
    'linux/arm64',
  ],
  ['$ inside range is the root', '{{range .Platforms}}{{$.Tag}} {{end}}', 'latest latest '],
  ['if true', '{{if .Count}}yes{{end}}', 'yes'],
  ['if with else', '{{if .Zero}}yes{{else}}no{{end}}', 'no'],
  ['if of an empty string', '{{if .Html}}set{{end}}{{if ""}}never{{end}}', 'set'],
  ['else if chain', '{{if eq .Tag "a"}}A{{else if eq .Tag "latest"}}L{{else}}O{{end}}', 'L'],
  [
    'docker default: if CreatedSince else N/A',
    '{{if .CreatedSince }}{{.CreatedSince}}{{else}}N/A{{end}}',
    '5 days ago',
  ],
  ['with', '{{with .Nested.Manifest}}{{.digest}}{{end}}', 'sha256:abc'],
  ['with else', '{{with .Nil}}x{{else}}empty{{end}}', 'empty'],
  ['index of a map', '{{index .Labels "com.example.version"}}', '1.0'],
  ['index of a missing key', '{{index .Labels "nope"}}', '<no value>'],
  ['index of a slice', '{{index .Platforms 1}}', 'linux/arm64'],
  ['nested index', '{{index .Nested.Manifest.manifests 0 | printf "%v"}}', '{{linux}}'],
  ['join', '{{join .Platforms ", "}}', 'linux/amd64, linux/arm64'],
  ['split', '{{index (split .Repository "u") 1}}', 'b'],
  ['upper and lower', '{{upper .Tag}} {{lower "ABC"}}', 'LATEST abc'],
  ['pipeline into a function', '{{.Repository | upper}}', 'UBUNTU'],
  ['pipeline of two stages', '{{.Repository | upper | printf "<%s>"}}', '<UBUNTU>'],
  ['title', '{{title "hello world"}}', 'Hello World'],
  ['pad and truncate', '[{{pad .Tag 1 2}}][{{truncate .ID 4}}]', '[ latest  ][4dd9]'],
  ['len', '{{len .Platforms}} {{len .Labels}} {{len .Tag}}', '2 1 6'],
  [
    'printf verbs',
    '{{printf "%s %d %q %v %5s|%-5s|%05d %x %.2f %t %%" .Tag .Count .Tag .Platforms "ab" "cd" 42 255 3.14159 true}}',
    'latest 3 "latest" [linux/amd64 linux/arm64]    ab|cd   |00042 ff 3.14 true %',
  ],
  ['printf wrong verb and missing argument', '{{printf "%d %s" "x"}}', '%!d(string=x) %!s(MISSING)'],
  ['printf extra argument', '{{printf "x" 1}}', 'x%!(EXTRA int=1)'],
  ['print and println', '{{print 1 2 "a" 3}}|{{println .Tag 1}}', '1 2a3|latest 1\n'],
  ['eq with several values', '{{if eq .Tag "a" "latest"}}yes{{end}}', 'yes'],
  [
    'ne lt le gt ge',
    '{{ne 1 2}} {{lt 1 2}} {{le 2 2}} {{gt "b" "a"}} {{ge 1 2}}',
    'true true true true false',
  ],
  ['and or not', '{{and 1 0}} {{or 0 "" "x"}} {{not .Zero}} {{and .Count .Tag}}', '0 x true latest'],
  ['and stops at the first false', '{{and .Nil .Nil.X}}', '<nil>'],
  ['variables', '{{$t := .Tag}}{{$t}}{{$t = "x"}}{{$t}}', 'latestx'],
  ['parenthesised pipeline with a field', '{{(index .Nested.Manifest.manifests 0).platform.os}}', 'linux'],
  [
    'literals',
    '{{"a\\tb"}} {{`raw\\n`}} {{1.5}} {{true}} {{nil}} {{0x1F}} {{\'a\'}}',
    'a\tb raw\\n 1.5 true <nil> 31 97',
  ],
  [
    'printing of nil, maps, slices, structs',
    '{{.Nil}} {{.Labels}} {{.Platforms}} {{.Nested.Manifest.manifests}}',
    '<nil> map[com.example.version:1.0] [linux/amd64 linux/arm64] [{{linux}}]',
  ],
  [
    'a missing map key prints <no value> all the way down',
    '{{.Labels.nope}} {{.Labels.nope.deeper}}',
    '<no value> <no value>',
  ],
  [
    'json of a value (docker: compact, no HTML escapes)',
    '{{json .Platforms}} {{json .Html}} {{json .Labels}}',
    '["linux/amd64","linux/arm64"] "<a&b>" {"com.example.version":"1.0"}',
  ],
  ['json of a nested object', '{{json .Nested.Manifest.manifests}}', '[{"platform":{"os":"linux"}}]'],
];

const errors: Array<[string, string, RegExp | string]> = [
  [
    'unknown field (docker wording, column of the field)',
    '{{.Nope}}',
    `template: :1:2: executing "" at <.Nope>: can't evaluate field Nope in type *formatter.imageContext`,
  ],
  [
    'unknown field after text',
    '{{.ID}} {{.Repository}}:{{.Nope}}',
    `template: :1:26: executing "" at <.Nope>: can't evaluate field Nope in type *formatter.imageContext`,
  ],
  [
    'unknown field on the second line',
    'a\n  {{.Nope}}',
    `template: :2:4: executing "" at <.Nope>: can't evaluate field Nope in type *formatter.imageContext`,
  ],
  [
    'field of a string',
    '{{.Tag.X}}',
    `template: :1:2: executing "" at <.Tag.X>: can't evaluate field X in type string`,
  ],
  [
    'field of nil',
    '{{.Nil.X}}',
    'template: :1:2: executing "" at <.Nil.X>: nil pointer evaluating interface {}.X',
  ],
  [
    'wrong argument type',
    '{{upper .Count}}',
    'template: :1:8: executing "" at <.Count>: wrong type for value; expected string; got int',
  ],
  [
    'wrong number of arguments',
    '{{upper "a" "b"}}',
    'template: :1:2: executing "" at <upper>: wrong number of args for upper: want 1 got 2',
  ],
  [
    'index out of range',
    '{{index .Platforms 5}}',
    'template: :1:2: executing "" at <index>: error calling index: index out of range: 5',
  ],
  [
    'join of a string',
    '{{join .Tag ","}}',
    'template: :1:2: executing "" at <join>: error calling join: expected slice, got string',
  ],
  [
    'range over a typed struct',
    '{{range .}}{{end}}',
    /^template: :1:2: executing "" at <.>: range can't iterate over/,
  ],
  [
    'arguments to a field',
    '{{.Tag 1}}',
    'template: :1:2: executing "" at <.Tag>: Tag has arguments but cannot be invoked as function',
  ],
  [
    'comparison of different types',
    '{{eq .Tag 1}}',
    'template: :1:2: executing "" at <eq>: error calling eq: incompatible types for comparison',
  ],
  ['unknown function', '{{.Tag | nope}}', 'template: :1:9: function "nope" not defined'],
  ['missing end', '{{range .Platforms}}x', 'template: :1:21: unexpected EOF'],
  ['stray end', 'x{{end}}', 'template: :1:3: unexpected {{end}}'],
  ['stray else', '{{else}}', 'template: :1:2: unexpected {{else}}'],
  ['unclosed action', 'ab {{.Tag', 'template: :1:3: unclosed action'],
  ['unterminated string', '{{"abc}}', 'template: :1:2: unterminated quoted string'],
  ['undefined variable', '{{$x}}', 'template: :1:2: undefined variable "$x"'],
  ['bad character', '{{.Tag @}}', "template: :1:7: bad character U+0040 '@'"],
  ['empty action', '{{}}', 'template: :1:2: missing value for command'],
  ['empty if', '{{if}}x{{end}}', 'template: :1:4: missing value for if'],
  ['literal in a pipeline', '{{.Tag | "x"}}', 'template: :1:9: non executable command in pipeline stage 2'],
  ['unsupported define', '{{define "x"}}{{end}}', 'template: :1:2: {{define}} is not supported'],
  ['break outside range', '{{break}}', 'template: :1:2: {{break}} outside {{range}}'],
];

describe('Go templates', () => {
  for (const [name, tmpl, want] of outputs)
    test(name, () => {
      assert.equal(parseTemplate(tmpl).execute(image), want);
    });
  for (const [name, tmpl, want] of errors)
    test(`error: ${name}`, () => {
      assert.throws(
        () => parseTemplate(tmpl).execute(image),
        (err: unknown) => {
          assert.ok(err instanceof TemplateError, String(err));
          assert.equal(err.exitCode, 1);
          if (typeof want === 'string') assert.equal(err.message, want);
          else assert.match(err.message, want);
          return true;
        },
      );
    });
  test('a template parses once and runs on many rows', () => {
    const t = parseTemplate('{{.A}}');
    assert.deepEqual(
      [{ A: 1 }, { A: 'x' }].map((r) => t.execute(r)),
      ['1', 'x'],
    );
  });
  test('GO_STRING and GO_JSON shape how a value prints and marshals', () => {
    const p = {
      os: 'linux',
      architecture: 'arm64',
      [GO_STRING]: () => 'linux/arm64',
      [GO_JSON]: () => ({ os: 'linux' }),
    };
    assert.equal(parseTemplate('{{.P}} {{json .P}}').execute({ P: p }), 'linux/arm64 {"os":"linux"}');
    assert.equal(goJson({ a: new RawJson('{"x":"\\u003c"}') }), '{"a":{"x":"\\u003c"}}');
  });
  test('functions can be added', () => {
    const t = parseTemplate('{{twice .A}}', { funcs: { twice: (s) => `${s}${s}` } });
    assert.equal(t.execute({ A: 'ab' }), 'abab');
  });
});

describe('docker formatter', () => {
  const rows = [
    { ID: '77af4d6b9913', Repository: '<none>', Tag: '<none>', Size: '1.09GB' },
    { ID: 'b6fa739cedf5', Repository: 'committ', Tag: 'latest', Size: '1.09GB' },
    { ID: '746b819f315e', Repository: 'postgres', Tag: '9.3.5', Size: '213MB' },
  ];
  const header = { ID: 'IMAGE ID', Repository: 'REPOSITORY', Tag: 'TAG', Size: 'SIZE' };
  const cases: Array<[string, string, string]> = [
    [
      'a custom format: one line per row, no header',
      '{{.ID}}: {{.Repository}}',
      '77af4d6b9913: <none>\nb6fa739cedf5: committ\n746b819f315e: postgres\n',
    ],
    [
      'table: header from the column titles, columns aligned (min 10, padding 3)',
      'table {{.ID}}\t{{.Repository}}\t{{.Tag}}',
      'IMAGE ID       REPOSITORY   TAG\n77af4d6b9913   <none>       <none>\nb6fa739cedf5   committ      latest\n746b819f315e   postgres     9.3.5\n',
    ],
    [
      'table with an escaped \\t as typed in a shell',
      'table {{.Repository}}\\t{{.Size}}',
      'REPOSITORY   SIZE\n<none>       1.09GB\ncommitt      1.09GB\npostgres     213MB\n',
    ],
    [
      'header keeps names through functions',
      'table {{.Repository | upper}}\t{{json .Tag}}',
      'REPOSITORY   TAG\n<NONE>       "<none>"\nCOMMITT      "latest"\nPOSTGRES     "9.3.5"\n',
    ],
    [
      'a field with no title prints <no value> in the header',
      'table {{.ID}}\t{{.Other}}',
      'IMAGE ID       <no value>\n77af4d6b9913   <no value>\nb6fa739cedf5   <no value>\n746b819f315e   <no value>\n',
    ],
    [
      'json: one object per line',
      'json',
      '{"ID":"77af4d6b9913","Repository":"<none>","Tag":"<none>","Size":"1.09GB"}\n',
    ],
  ];
  for (const [name, format, want] of cases)
    test(name, () => {
      const data = format.includes('Other')
        ? rows.map((r) => ({ ...r, Other: undefined }))
        : format === 'json'
          ? rows.slice(0, 1)
          : rows;
      assert.equal(formatRows(format, data, { header }), want);
    });
  test('bare table means the default table format', () => {
    assert.equal(
      formatRows('table', rows.slice(0, 1), { header, defaultTable: 'table {{.Repository}}\t{{.Tag}}' }),
      'REPOSITORY   TAG\n<none>       <none>\n',
    );
  });
  test('an empty table still has its header', () => {
    assert.equal(formatRows('table {{.ID}}\t{{.Size}}', [], { header }), 'IMAGE ID   SIZE\n');
  });
  test('errors are wrapped as docker wraps them', () => {
    assert.throws(() => formatRows('{{.Nope}}', rows, { header }), {
      message: `template parsing error: template: :1:2: executing "" at <.Nope>: can't evaluate field Nope in type struct`,
    });
    assert.throws(() => formatRows('{{.ID', rows), {
      message: 'template parsing error: template: :1:0: unclosed action',
    });
  });
  test('templateText strips table and unescapes \\t and \\n', () => {
    assert.equal(templateText('table {{.A}}\\t{{.B}}\\n'), '{{.A}}\t{{.B}}\n');
    assert.equal(templateText('json'), '{{json .}}');
    assert.equal(templateText('  {{.A}}  '), '{{.A}}');
  });
});

describe('fmt, json and tabwriter', () => {
  test('sprintf', () => {
    const cases: Array<[string, unknown[], string]> = [
      ['%s|%v|%d', ['a', [1, 'b'], -4], 'a|[1 b]|-4'],
      ['%6.2f|%-6d|%+d|% d', [1.23456, 7, 5, 5], '  1.23|7     |+5| 5'],
      ['%x %X %o %b %c', [255, 'hi', 8, 5, 65], 'ff 6869 10 101 A'],
      ['%q %q', ['a"b', ['x', 'y']], '"a\\"b" ["x" "y"]'],
      ['%.3s|%*d', ['abcdef', 4, 7], 'abc|   7'],
      ['%s %d', [1, 1.5], '%!s(int=1) %!d(float64=1.5)'],
      ['100%%', [], '100%'],
    ];
    for (const [f, args, want] of cases) assert.equal(sprintf(f, args), want, f);
  });
  test('goJson writes what Go writes', () => {
    const v = {
      b: 1,
      a: ['<x>', null, true],
      m: new Map([
        ['z', 1],
        ['a', 2],
      ]),
      u: undefined,
      e: {},
      l: [],
    };
    assert.equal(goJson(v), '{"b":1,"a":["\\u003cx\\u003e",null,true],"m":{"a":2,"z":1},"e":{},"l":[]}');
    assert.equal(goJson(v, { escapeHTML: false }).includes('"<x>"'), true);
    assert.equal(
      goJson({ a: [1, 2], b: {} }, { indent: '  ' }),
      '{\n  "a": [\n    1,\n    2\n  ],\n  "b": {}\n}',
    );
    assert.equal(goJson('\u2028\u0001\n'), '"\\u2028\\u0001\\n"');
  });
  test('tabwrite: elastic columns as Go text/tabwriter', () => {
    // docker's settings
    assert.equal(
      tabwrite('A\tBB\nCCCCCCCCCCC\tD\n', { minwidth: 10, padding: 3 }),
      'A             BB\nCCCCCCCCCCC   D\n',
    );
    // a line with fewer cells ends the column block (Go's doc example)
    assert.equal(
      tabwrite('aaaa\tbbb\td\naa\tb\tdd\na\t\naa\tcccc\teee\n', { padding: 1 }),
      'aaaa bbb d\naa   b   dd\na    \naa   cccc eee\n',
    );
    // buildx inspect's: minwidth 0, padding 1
    assert.equal(tabwrite('Name:\tx\nMediaType:\ty\n'), 'Name:      x\nMediaType: y\n');
  });
});
