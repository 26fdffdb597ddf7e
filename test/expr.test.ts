import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it, expect } from 'vitest';
import {
  ExpressionError,
  evaluate,
  findTemplates,
  isTemplate,
  parseExpression,
  parseTemplate,
  references,
  renderDeep,
  renderTemplate,
  templateExpressions,
} from '../engine/expr/index.ts';

const scope = {
  item: { name: 'Ann', id: 7, keywords: ['seo', 'ads'], empty: '', nothing: null, nested: { deep: { x: 1 } } },
  steps: { fetch: { output: { rows: [{ name: 'r0' }, { name: 'r1' }] } } },
  n: 10,
  s: 'hello',
  list: [3, 1, 2],
  k: 'name',
};

const ev = (src: string, sc: Record<string, unknown> = scope) => evaluate(parseExpression(src), sc);
const render = (text: string, sc: Record<string, unknown> = scope) => renderTemplate(parseTemplate(text), sc);

/** Runs `f`, which must throw an ExpressionError; returns its message and offset. */
function fail(f: () => unknown): { message: string; offset: number | undefined } {
  try {
    f();
  } catch (err) {
    if (err instanceof ExpressionError) return { message: err.message, offset: err.offset };
    throw err;
  }
  throw new Error('expected an ExpressionError');
}
const parseFail = (src: string) => fail(() => parseExpression(src));
const evalFail = (src: string, sc: Record<string, unknown> = scope) => fail(() => ev(src, sc));

const notPolluted = () => {
  expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  expect(Object.prototype).not.toHaveProperty('polluted');
};

describe('literals', () => {
  it('evaluates numbers, strings, booleans and null', () => {
    expect(ev('42')).toBe(42);
    expect(ev('1.5')).toBe(1.5);
    expect(ev('1e3')).toBe(1000);
    expect(ev('2.5E-1')).toBe(0.25);
    expect(ev(`'single'`)).toBe('single');
    expect(ev(`"double"`)).toBe('double');
    expect(ev(`'it\\'s' + "\\"q\\"" + '\\n\\t\\u0041'`)).toBe(`it's"q"\n\tA`);
    expect(ev('true')).toBe(true);
    expect(ev('false')).toBe(false);
    expect(ev('null')).toBe(null);
  });

  it('builds arrays and objects', () => {
    expect(ev('[1, "a", [true, null]]')).toEqual([1, 'a', [true, null]]);
    expect(ev('[]')).toEqual([]);
    expect(ev('[1, 2,]')).toEqual([1, 2]);
    expect(ev('{ a: 1, "b c": n, 3: [k] }')).toEqual({ a: 1, 'b c': 10, 3: ['name'] });
    expect(ev('{ n, s }')).toEqual({ n: 10, s: 'hello' });
    expect(ev('{ a: { b: { c: 1 } } }.a.b')).toEqual({ c: 1 });
    expect(ev('{}')).toEqual({});
  });
});

describe('operators', () => {
  it('does arithmetic', () => {
    expect(ev('1 + 2')).toBe(3);
    expect(ev('n - 4')).toBe(6);
    expect(ev('n * 3')).toBe(30);
    expect(ev('n / 4')).toBe(2.5);
    expect(ev('n % 3')).toBe(1);
    expect(ev('-n')).toBe(-10);
    expect(ev('- -n')).toBe(10);
  });

  it('concatenates strings, converting numbers', () => {
    expect(ev(`'a' + 'b'`)).toBe('ab');
    expect(ev(`'n=' + n`)).toBe('n=10');
    expect(ev(`n + '!'`)).toBe('10!');
    expect(ev(`1 + 2 + 'x'`)).toBe('3x');
  });

  it('rejects operands of the wrong type', () => {
    expect(evalFail(`'a' + null`)).toEqual({ message: 'operator + cannot combine string and null', offset: 4 });
    expect(evalFail(`[1] + [2]`)).toEqual({ message: 'operator + cannot combine array and array', offset: 4 });
    expect(evalFail(`'a' * 2`)).toEqual({ message: 'operator * expects numbers, got string', offset: 4 });
    expect(evalFail(`-s`)).toEqual({ message: 'operator - expects numbers, got string', offset: 0 });
    expect(evalFail(`item.missing > 1`)).toEqual({
      message: 'operator > cannot compare undefined and number',
      offset: 13,
    });
  });

  it('compares without coercion', () => {
    expect(ev(`1 == 1`)).toBe(true);
    expect(ev(`1 == '1'`)).toBe(false);
    expect(ev(`1 != '1'`)).toBe(true);
    expect(ev(`1 === 1`)).toBe(true);
    expect(ev(`null == item.missing`)).toBe(false);
    expect(ev(`0 == false`)).toBe(false);
    expect(ev(`'a' !== 'a'`)).toBe(false);
    expect(ev(`n < 11 && n <= 10 && n > 9 && n >= 10`)).toBe(true);
    expect(ev(`'abc' < 'abd'`)).toBe(true);
  });

  it('has JS logical semantics, returning operands', () => {
    expect(ev(`!true`)).toBe(false);
    expect(ev(`!!s`)).toBe(true);
    expect(ev(`!item.empty`)).toBe(true);
    expect(ev(`s && n`)).toBe(10);
    expect(ev(`item.empty && n`)).toBe('');
    expect(ev(`item.empty || 'fallback'`)).toBe('fallback');
    expect(ev(`s || unknownRoot`)).toBe('hello'); // short-circuits: the right side never runs
  });

  it('?? only falls back on null and undefined', () => {
    expect(ev(`item.nothing ?? 'x'`)).toBe('x');
    expect(ev(`item.missing ?? 'x'`)).toBe('x');
    expect(ev(`item.empty ?? 'x'`)).toBe('');
    expect(ev(`0 ?? 'x'`)).toBe(0);
    expect(ev(`false ?? 'x'`)).toBe(false);
    expect(ev(`item.missing ?? item.nothing ?? 3`)).toBe(3);
  });

  it('follows precedence', () => {
    expect(ev('1 + 2 * 3')).toBe(7);
    expect(ev('(1 + 2) * 3')).toBe(9);
    expect(ev('10 - 4 - 3')).toBe(3);
    expect(ev('2 * 3 % 4')).toBe(2);
    expect(ev('1 + 2 == 3')).toBe(true);
    expect(ev('1 < 2 == true')).toBe(true);
    expect(ev('true || false && false')).toBe(true);
    expect(ev('!false && false')).toBe(false);
    expect(ev('-2 * 3')).toBe(-6);
    expect(ev(`item.missing ?? false || 'or'`)).toBe('or'); // ?? binds looser than ||
    expect(ev(`n > 5 ? 'big' : 'small'`)).toBe('big');
    expect(ev(`false || n ? 1 : 2`)).toBe(1);
  });

  it('evaluates ternaries lazily and right-associatively', () => {
    expect(ev(`n > 100 ? 'a' : n > 5 ? 'b' : 'c'`)).toBe('b');
    expect(ev(`true ? 1 : unknownRoot`)).toBe(1);
    expect(ev(`item.nothing ? 1 : 2`)).toBe(2);
    expect(ev(`(n > 5 ? item : steps).name`)).toBe('Ann');
  });

  it('handles long operator chains', () => {
    const src = Array.from({ length: 1_500 }, () => '1').join('+');
    expect(ev(src)).toBe(1_500);
  });
});

describe('member and index access', () => {
  it('reads properties and indexes', () => {
    expect(ev('item.name')).toBe('Ann');
    expect(ev('item["name"]')).toBe('Ann');
    expect(ev('item[k]')).toBe('Ann');
    expect(ev('item.keywords[1]')).toBe('ads');
    expect(ev('item.keywords[n - 9]')).toBe('ads');
    expect(ev('steps.fetch.output.rows[0].name')).toBe('r0');
    expect(ev('item.nested.deep')).toEqual({ x: 1 });
    expect(ev('[10, 20][1]')).toBe(20);
  });

  it('reads length and characters of strings and arrays', () => {
    expect(ev('s.length')).toBe(5);
    expect(ev('s[1]')).toBe('e');
    expect(ev('list.length')).toBe(3);
    expect(ev('item.keywords["length"]')).toBe(2);
  });

  it('yields undefined for missing paths instead of throwing', () => {
    expect(ev('item.missing')).toBeUndefined();
    expect(ev('item.missing.deeper.still')).toBeUndefined();
    expect(ev('item.nothing.x')).toBeUndefined();
    expect(ev('item.keywords[5]')).toBeUndefined();
    expect(ev('item.keywords[-1]')).toBeUndefined();
    expect(ev('item.keywords.foo')).toBeUndefined();
    expect(ev('s[99]')).toBeUndefined();
    expect(ev('n.x')).toBeUndefined();
    expect(ev('null.x')).toBeUndefined();
    expect(ev('item[item.missing]')).toBeUndefined();
  });

  it('rejects computed keys that are not strings or numbers', () => {
    expect(evalFail('item[true]')).toEqual({ message: 'cannot use boolean as a property key', offset: 5 });
    expect(evalFail('item[[1]]')).toEqual({ message: 'cannot use array as a property key', offset: 5 });
  });

  it('reports unknown roots with the available ones', () => {
    expect(evalFail('itme.name')).toEqual({
      message: 'unknown identifier "itme" (available roots: item, steps, n, s, list, k)',
      offset: 0,
    });
    expect(evalFail('1 + x', {})).toEqual({ message: 'unknown identifier "x" (no roots are available)', offset: 4 });
  });
});

describe('functions', () => {
  const clock = () => new Date('2024-05-06T07:08:09.000Z');
  const call = (src: string) => evaluate(parseExpression(src), scope, { now: clock });

  it.each([
    ['length(item.keywords)', 2],
    ['length("abc")', 3],
    ['length({ a: 1, b: 2 })', 2],
    ['lower("AbC")', 'abc'],
    ['upper(s)', 'HELLO'],
    ['trim("  x ")', 'x'],
    ['concat("a", "b", 1, true)', 'ab1true'],
    ['concat([1], [2, 3], [])', [1, 2, 3]],
    ['join(item.keywords, ", ")', 'seo, ads'],
    ['join([1, null, "x", { a: 1 }])', '1,,x,{"a":1}'],
    ['split("a,b,c", ",")', ['a', 'b', 'c']],
    ['contains("haystack", "st")', true],
    ['contains("haystack", "x")', false],
    ['contains(item.keywords, "ads")', true],
    ['contains([1, 2], "1")', false],
    ['startsWith(s, "he")', true],
    ['endsWith(s, "lo")', true],
    ['endsWith(s, "he")', false],
    ['json({ a: [1, "x"] })', '{"a":[1,"x"]}'],
    ['json(item.missing)', 'null'],
    ['json({ a: 1 }, 2)', '{\n  "a": 1\n}'],
    ['fromJson("{\\"a\\": [1, 2]}")', { a: [1, 2] }],
    ['fromJson("{\\"a\\": [1, 2]}").a[1]', 2],
    ['default(item.missing, "fb")', 'fb'],
    ['default(item.nothing, "fb")', 'fb'],
    ['default(item.empty, "fb")', 'fb'],
    ['default(0, "fb")', 0],
    ['default(s, "fb")', 'hello'],
    ['round(2.5)', 3],
    ['round(1.005, 2)', 1.01],
    ['round(3.14159, 3)', 3.142],
    ['floor(2.7)', 2],
    ['ceil(2.1)', 3],
    ['min(3, 1, 2)', 1],
    ['min(list)', 1],
    ['max(3, 1, 2)', 3],
    ['max(list)', 3],
    ['sum(list)', 6],
    ['sum([])', 0],
    ['keys({ a: 1, b: 2 })', ['a', 'b']],
    ['values({ a: 1, b: 2 })', [1, 2]],
    ['range(2, 5)', [2, 3, 4]],
    ['range(5, 2)', []],
    ['now()', '2024-05-06T07:08:09.000Z'],
    ['date("2024-01-02")', '2024-01-02T00:00:00.000Z'],
    ['date(0)', '1970-01-01T00:00:00.000Z'],
    ['slice(list, 1)', [1, 2]],
    ['slice(list, 0, 2)', [3, 1]],
    ['slice(s, 1, 3)', 'el'],
    ['slice(s, -2)', 'lo'],
    ['first(list)', 3],
    ['first([])', undefined],
    ['last(list)', 2],
    ['last(s)', 'o'],
    ['pick(item, "name", "id", "missing")', { name: 'Ann', id: 7 }],
    ['pick(item, ["name"])', { name: 'Ann' }],
    ['hash("abc")', 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'],
    ['format(3.14159, 2)', '3.14'],
    ['format(2, 0)', '2'],
  ])('%s', (src, expected) => {
    expect(call(src)).toEqual(expected);
  });

  it('uuid() returns a random v4 UUID', () => {
    const a = call('uuid()');
    expect(a).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(call('uuid()')).not.toBe(a);
  });

  it('now() uses the system clock when none is injected', () => {
    const before = Date.now();
    const at = Date.parse(ev('now()') as string);
    expect(at).toBeGreaterThanOrEqual(before);
  });

  it('validates argument types', () => {
    expect(evalFail('lower(n)')).toEqual({ message: 'lower() expects a string as argument 1, got number', offset: 0 });
    expect(evalFail('1 + length(n)')).toEqual({
      message: 'length() expects a string, array or object, got number',
      offset: 4,
    });
    expect(evalFail('concat("a", [1])').message).toBe(
      'concat() expects an array (all arguments must be arrays) as argument 1, got string',
    );
    expect(evalFail('sum([1, "2"])').message).toBe('sum() expects numbers, got string');
    expect(evalFail('min([])').message).toBe('min() needs at least one number');
    expect(evalFail('date("not a date")').message).toBe('date() got an invalid date');
    expect(evalFail('range(0, 1.5)').message).toBe('range() expects an integer as argument 2, got number');
    expect(evalFail('fromJson("{")')).toMatchObject({ message: expect.stringMatching(/^fromJson\(\): /), offset: 0 });
    expect(evalFail('pick(item, 1)').message).toBe('pick() expects string keys, got number');
    expect(evalFail('format(1, 101)').message).toBe('format() digits must be between 0 and 100');
  });

  it('checks arity at parse time', () => {
    expect(parseFail('length()')).toEqual({ message: 'length() expects 1 argument, got 0', offset: 0 });
    expect(parseFail('x + round(1, 2, 3)')).toEqual({
      message: 'round() expects 1 to 2 arguments, got 3',
      offset: 4,
    });
    expect(parseFail('concat()').message).toBe('concat() expects at least 1 argument, got 0');
    expect(parseFail('now(1)').message).toBe('now() expects 0 arguments, got 1');
  });

  it('rejects unknown functions, suggesting the closest name', () => {
    expect(parseFail('lenght(x)')).toEqual({ message: 'unknown function "lenght" (did you mean "length"?)', offset: 0 });
    expect(parseFail('1 + uper(s)')).toEqual({ message: 'unknown function "uper" (did you mean "upper"?)', offset: 4 });
    expect(parseFail('fromjson(s)').message).toBe('unknown function "fromjson" (did you mean "fromJson"?)');
    const unknown = parseFail('frobnicate(1)');
    expect(unknown.message).toMatch(/^unknown function "frobnicate" \(known: length, lower, upper, /);
    expect(parseFail('eval("1")').message).toMatch(/^unknown function "eval"/);
  });
});

describe('syntax errors', () => {
  it.each([
    ['', 'empty expression', 0],
    ['   ', 'empty expression', 3],
    ['1 +', 'unexpected end of expression', 3],
    ['1 + * 2', 'unexpected "*"', 4],
    ['a b', 'unexpected identifier "b"', 2],
    ['(1 + 2', 'unexpected end of expression (expected ")")', 6],
    ['a[0', 'unexpected end of expression (expected "]")', 3],
    ['a ? b', 'unexpected end of expression (expected ":")', 5],
    ['{a 1}', 'unexpected number 1 (expected ":")', 3],
    ['[1,,2]', 'unexpected ","', 3],
    ["'abc", 'unterminated string literal', 0],
    ['"\\u12"', 'invalid \\u escape', 1],
    ['a = 1', 'unexpected character "="', 2],
    ['a; b', 'unexpected character ";"', 1],
    ['1.', 'invalid number', 0],
    ['12abc', 'invalid number', 0],
    ['a.', 'unexpected end of expression after "."', 2],
    ['a.1', 'unexpected number 1 after "."', 2],
    ['`x`', 'template literals are not supported', 0],
    ['x.toString()', 'method calls are not allowed; call whitelisted functions by bare name, e.g. length(x)', 10],
    ['(x)(1)', 'only whitelisted functions can be called, by bare name, e.g. length(x)', 3],
  ])('%j', (src, message, offset) => {
    expect(parseFail(src)).toEqual({ message, offset });
  });

  it('ExpressionError is an Error with a name', () => {
    const err = (() => {
      try {
        parseExpression('1 +');
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(ExpressionError);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).name).toBe('ExpressionError');
  });
});

describe('templates', () => {
  it('detects templates', () => {
    expect(isTemplate('plain')).toBe(false);
    expect(isTemplate('${{ x }}')).toBe(true);
    expect(isTemplate('a ${{ x }} b')).toBe(true);
    expect(isTemplate('$${{ x }}')).toBe(false);
    expect(isTemplate('$${{ x }} ${{ y }}')).toBe(true);
    expect(isTemplate('costs $5 {{ x }}')).toBe(false);
  });

  it('renders a whole-string expression to its raw value', () => {
    expect(render('${{ steps.fetch.output.rows }}')).toEqual([{ name: 'r0' }, { name: 'r1' }]);
    expect(render('${{ n }}')).toBe(10);
    expect(render('${{item.nothing}}')).toBeNull();
    expect(render('${{ item.missing }}')).toBeUndefined();
    expect(render('${{ { a: n } }}')).toEqual({ a: 10 });
    expect(render('${{ n > 5 }}')).toBe(true);
  });

  it('renders mixed text to a string', () => {
    expect(render('Hello ${{ item.name }}, you have ${{ length(item.keywords) }} keywords')).toBe(
      'Hello Ann, you have 2 keywords',
    );
    expect(render(' ${{ n }}')).toBe(' 10');
    expect(render('${{ n }}${{ n }}')).toBe('1010');
    expect(render('[${{ item.nothing }}|${{ item.missing }}]')).toBe('[|]');
    expect(render('obj=${{ item.nested }} arr=${{ list }} b=${{ true }}')).toBe(
      'obj={"deep":{"x":1}} arr=[3,1,2] b=true',
    );
    expect(render('no expressions')).toBe('no expressions');
  });

  it('treats $${{ as a literal ${{', () => {
    expect(render('$${{ item.name }}')).toBe('${{ item.name }}');
    expect(render('$${{ x }} and ${{ item.name }}')).toBe('${{ x }} and Ann');
    expect(render('$$${{ n }}')).toBe('$${{ n }}');
    expect(render('$ ${{ n }}')).toBe('$ 10');
  });

  it('finds the closing }} with the tokenizer', () => {
    expect(render('${{ "}}" }}')).toBe('}}');
    expect(render('${{ { a: { b: 1 } } }}')).toEqual({ a: { b: 1 } });
    expect(render('x${{ {a: {b: 1}} }}y')).toBe('x{"a":{"b":1}}y');
    expect(render('${{ n }}}')).toBe('10}');
  });

  it('reports template syntax errors with offsets in the whole text', () => {
    const tf = (text: string) => fail(() => parseTemplate(text));
    expect(tf('Hi ${{ item.name ')).toEqual({ message: 'unclosed "${{" (missing "}}")', offset: 3 });
    expect(tf('Hi ${{ 1 + }}')).toEqual({ message: 'unexpected end of expression', offset: 11 });
    expect(tf('x ${{ }}')).toEqual({ message: 'empty expression', offset: 6 });
    expect(tf('${{ a } }}')).toEqual({ message: 'unexpected "}"', offset: 6 });
    expect(tf("ok ${{ 'a }}")).toEqual({ message: 'unterminated string literal', offset: 7 });
    expect(tf('a ${{ b }} ${{ lenght(x) }}')).toEqual({
      message: 'unknown function "lenght" (did you mean "length"?)',
      offset: 15,
    });
  });

  it('reports evaluation errors with offsets in the whole text', () => {
    expect(fail(() => render('Hi ${{ nope }}'))).toEqual({
      message: 'unknown identifier "nope" (available roots: item, steps, n, s, list, k)',
      offset: 7,
    });
    expect(fail(() => render('${{ range(0, 2000000) }}')).offset).toBe(4);
  });

  it('lists expressions with their offsets', () => {
    const text = 'Hi ${{ item.name }} (${{item.id}})';
    const exprs = templateExpressions(parseTemplate(text));
    expect(exprs.map((e) => [e.expr.source, e.offset])).toEqual([
      [' item.name ', 6],
      ['item.id', 24],
    ]);
    for (const { expr, offset } of exprs) {
      expect(text.slice(offset, offset + expr.source.length)).toBe(expr.source);
      const [ref] = references(expr);
      expect(text.slice(offset + ref!.offset).startsWith('item')).toBe(true);
    }
  });

  it('caches parsed templates and expressions', () => {
    const text = 'cached ${{ item.name }}';
    expect(parseTemplate(text)).toBe(parseTemplate(text));
    expect(parseExpression('n + 1')).toBe(parseExpression('n + 1'));
    expect(parseTemplate(text).source).toBe(text);
  });

  it('accepts Expression and Template objects not built by the parser', () => {
    expect(evaluate({ source: 'n + 1' }, scope)).toBe(11);
    expect(renderTemplate({ source: 'x${{ n }}' }, scope)).toBe('x10');
  });

  it('renders 50,000 items with a parsed template (sanity check, no timing assertion)', () => {
    const t = parseTemplate(
      'Report for ${{ upper(item.name) }} (#${{ item.id }}): ${{ join(item.keywords, ", ") }}; ' +
        '${{ length(item.keywords) > 1 ? "many" : "few" }} keywords, ${{ default(item.nothing, "n/a") }}',
    );
    let total = 0;
    for (let i = 0; i < 50_000; i++) {
      const item = { name: `name${i}`, id: i, keywords: ['a', 'b', String(i)], nothing: null };
      total += (renderTemplate(t, { item }) as string).length;
    }
    expect(total).toBeGreaterThan(50_000 * 50);
    expect(renderTemplate(t, { item: { name: 'x', id: 1, keywords: ['k'], nothing: null } })).toBe(
      'Report for X (#1): k; few keywords, n/a',
    );
  });
});

describe('renderDeep', () => {
  it('renders every template string in a fresh structure', () => {
    const input = {
      url: 'https://x/${{ item.id }}',
      rows: '${{ steps.fetch.output.rows }}',
      list: ['${{ n }}', 'plain', 3, true, null, { deep: '${{ s }}!' }],
      '${{ key }}': 'keys are not templated',
      escaped: '$${{ literal }}',
      when: new Date(0),
    };
    const snapshot = structuredClone(input);
    const out = renderDeep(input, scope) as Record<string, unknown>;
    expect(out).toEqual({
      url: 'https://x/7',
      rows: [{ name: 'r0' }, { name: 'r1' }],
      list: [10, 'plain', 3, true, null, { deep: 'hello!' }],
      '${{ key }}': 'keys are not templated',
      escaped: '${{ literal }}',
      when: new Date(0),
    });
    expect(input).toEqual(snapshot);
    expect(out).not.toBe(input);
    expect(out.list).not.toBe(input.list);
    expect(renderDeep('${{ n }}', scope)).toBe(10);
    expect(renderDeep(5, scope)).toBe(5);
  });

  it('locates failures by path and offset', () => {
    const err = (() => {
      try {
        renderDeep({ a: [{ b: 'x ${{ nope }}' }] }, scope);
      } catch (e) {
        return e;
      }
    })() as ExpressionError;
    expect(err).toBeInstanceOf(ExpressionError);
    expect(err.path).toEqual(['a', 0, 'b']);
    expect(err.offset).toBe(6);
  });

  it('rejects cyclic structures', () => {
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = cyclic;
    expect(fail(() => renderDeep(cyclic, scope)).message).toBe('cannot render a cyclic structure');
    const shared = { x: '${{ n }}' };
    expect(renderDeep({ a: shared, b: shared }, scope)).toEqual({ a: { x: 10 }, b: { x: 10 } });
  });
});

describe('findTemplates', () => {
  it('yields every template string with its path', () => {
    const doc = {
      name: 'plain',
      steps: [
        { id: 'fetch', with: { url: 'https://x/${{ item.id }}', limit: 5 } },
        { id: 'send', with: { body: ['${{ steps.fetch.output }}', '$${{ escaped }}'] } },
      ],
      '${{ key }}': 'not a template',
    };
    expect(findTemplates(doc)).toEqual([
      { path: ['steps', 0, 'with', 'url'], text: 'https://x/${{ item.id }}' },
      { path: ['steps', 1, 'with', 'body', 0], text: '${{ steps.fetch.output }}' },
    ]);
    expect(findTemplates(['${{ a }}'], ['root'])).toEqual([{ path: ['root', 0], text: '${{ a }}' }]);
    expect(findTemplates('${{ a }}')).toEqual([{ path: [], text: '${{ a }}' }]);
    expect(findTemplates(42)).toEqual([]);
  });
});

describe('references', () => {
  const refs = (src: string) => references(parseExpression(src)).map((r) => [r.path.join('.'), r.offset]);

  it('lists static member paths with offsets', () => {
    expect(references(parseExpression('steps.fetch.output.rows[0].name + item.id'))).toEqual([
      { path: ['steps', 'fetch', 'output', 'rows'], offset: 0 },
      { path: ['item', 'id'], offset: 34 },
    ]);
    expect(refs(`item['name'].x`)).toEqual([['item.name.x', 0]]);
    expect(refs('a[b.c].d')).toEqual([
      ['a', 0],
      ['b.c', 2],
    ]);
    expect(refs(`length(item.keywords) > 0 ? upper(item.name) : 'none'`)).toEqual([
      ['item.keywords', 7],
      ['item.name', 34],
    ]);
    expect(refs('[a.b, { k: c, d }, -e.f, (g).h]')).toEqual([
      ['a.b', 1],
      ['c', 11],
      ['d', 14],
      ['e.f', 20],
      ['g.h', 26],
    ]);
    expect(refs('{ x: 1 }.x')).toEqual([]);
    expect(refs('1 + 2')).toEqual([]);
    expect(refs('a[i][j]')).toEqual([
      ['a', 0],
      ['i', 2],
      ['j', 5],
    ]);
  });
});

describe('security', () => {
  const hostile = { payload: JSON.parse('{"__proto__": {"polluted": 1}, "a": 1}') as unknown, key: '__proto__' };

  it('rejects __proto__, prototype and constructor wherever they are written', () => {
    expect(parseFail('__proto__')).toEqual({ message: 'access to "__proto__" is not allowed', offset: 0 });
    expect(parseFail('constructor')).toEqual({ message: 'access to "constructor" is not allowed', offset: 0 });
    expect(parseFail('a.constructor')).toEqual({ message: 'access to "constructor" is not allowed', offset: 2 });
    expect(parseFail('a.__proto__.polluted')).toEqual({ message: 'access to "__proto__" is not allowed', offset: 2 });
    expect(parseFail('a.prototype')).toEqual({ message: 'access to "prototype" is not allowed', offset: 2 });
    expect(parseFail(`a['constructor']`)).toEqual({ message: 'access to "constructor" is not allowed', offset: 2 });
    expect(parseFail(`a["__proto__"]`)).toEqual({ message: 'access to "__proto__" is not allowed', offset: 2 });
    expect(parseFail(`a['\\u005f_proto__']`)).toEqual({ message: 'access to "__proto__" is not allowed', offset: 2 });
    expect(parseFail(`{ "__proto__": { polluted: 1 } }`)).toEqual({
      message: 'access to "__proto__" is not allowed',
      offset: 2,
    });
    expect(parseFail(`{ __proto__: 1 }`).message).toBe('access to "__proto__" is not allowed');
    expect(parseFail(`{ constructor: 1 }`).message).toBe('access to "constructor" is not allowed');
    expect(parseFail(`{ prototype }`).message).toBe('access to "prototype" is not allowed');
    notPolluted();
  });

  it('rejects forbidden keys computed at run time', () => {
    expect(evalFail(`payload['__pro' + 'to__']`, hostile)).toEqual({
      message: 'access to "__proto__" is not allowed',
      offset: 8,
    });
    expect(evalFail(`payload[key].polluted`, hostile).message).toBe('access to "__proto__" is not allowed');
    expect(evalFail(`s[concat('constr', 'uctor')]`, { s: 'x' }).message).toBe(
      'access to "constructor" is not allowed',
    );
    expect(evalFail(`pick(payload, key)`, hostile).message).toBe('access to "__proto__" is not allowed');
    notPolluted();
  });

  it('never reads inherited properties or returns functions', () => {
    const sc = {
      o: { a: 1 },
      arr: [1],
      str: 'abc',
      fn: () => 1,
      holder: { method: () => 2, list: [() => 3] },
      map: new Map([['size', 1]]),
    };
    for (const src of [
      'o.toString',
      'o.hasOwnProperty',
      'o.valueOf',
      'o.__defineGetter__',
      '({}).toString',
      '{}.isPrototypeOf',
      'arr.map',
      'arr.push',
      'str.toUpperCase',
      'str.charAt',
      "o['toString']",
      'fn',
      'holder.method',
      'holder.list[0]',
      'first(holder.list)',
      'map.size',
      'map.get',
      'n.toFixed',
      'true.valueOf',
    ]) {
      const value = evaluate(parseExpression(src), { ...sc, n: 1 });
      expect(typeof value, src).not.toBe('function');
      expect(value, src).toBeUndefined();
    }
    expect(evaluate(parseExpression('values(holder)'), sc)).toEqual([undefined, [expect.any(Function)]]);
    expect(parseFail('o.toString()').message).toMatch(/^method calls are not allowed/);
    expect(parseFail('o.hasOwnProperty("a")').message).toMatch(/^method calls are not allowed/);
    expect(parseFail('str["toUpperCase"]()').message).toMatch(/^method calls are not allowed/);
  });

  it('does not run getters', () => {
    let ran = false;
    const o = {
      get secret() {
        ran = true;
        return 'leak';
      },
    };
    expect(ev('o.secret', { o })).toBeUndefined();
    expect(ran).toBe(false);
  });

  it('keeps data that holds a __proto__ key inert', () => {
    expect(ev('payload.a', hostile)).toBe(1);
    expect(ev('payload.polluted', hostile)).toBeUndefined();
    expect(ev('keys(payload)', hostile)).toEqual(['__proto__', 'a']);
    expect(ev('values(payload)[0].polluted', hostile)).toBe(1); // it is plain data
    expect(ev(`fromJson('{"__proto__": {"polluted": 1}}').polluted`, {})).toBeUndefined();
    const parsed = ev(`fromJson('{"__proto__": {"polluted": 1}}')`, {}) as object;
    expect(Object.getPrototypeOf(parsed)).toBe(Object.prototype);
    notPolluted();

    const rendered = renderDeep(JSON.parse('{"__proto__": {"polluted": "${{ 1 }}"}, "b": "${{ 2 }}"}'), {}) as Record<
      string,
      unknown
    >;
    expect(Object.getPrototypeOf(rendered)).toBe(Object.prototype);
    expect(rendered.polluted).toBeUndefined();
    expect(Object.keys(rendered)).toEqual(['__proto__', 'b']);
    expect(Object.getOwnPropertyDescriptor(rendered, '__proto__')?.value).toEqual({ polluted: 1 });
    notPolluted();

    const picked = ev('pick(payload, "a")', hostile) as object;
    expect(picked).toEqual({ a: 1 });
    notPolluted();
  });

  it('builds object literals that cannot reach a prototype', () => {
    const made = ev(`{ a: 1, "b": payload }`, hostile) as Record<string, unknown>;
    expect(Object.getPrototypeOf(made)).toBe(Object.prototype);
    expect(made.polluted).toBeUndefined();
    expect(ev(`{ toString: 1 }.toString`, {})).toBe(1);
    notPolluted();
  });

  it('caps expression length and nesting', () => {
    expect(parseFail('a'.repeat(4_001))).toEqual({
      message: 'expression is too long (4001 characters, max 4000)',
      offset: 0,
    });
    expect(parseFail('('.repeat(150) + '1' + ')'.repeat(150))).toEqual({
      message: 'expression is nested too deeply (max 100 levels)',
      offset: 100, // the 101st parenthesis
    });
    expect(parseFail('!'.repeat(500) + 'true').message).toBe('expression is nested too deeply (max 100 levels)');
    expect(parseFail('['.repeat(300)).message).toBe('expression is nested too deeply (max 100 levels)');
    expect(parseFail('a ? '.repeat(200) + '1').message).toBe('expression is nested too deeply (max 100 levels)');
    expect(ev('('.repeat(100) + '1' + ')'.repeat(100))).toBe(1);
  });

  it('caps evaluation work', () => {
    expect(evalFail('range(0, 2000000)')).toEqual({
      message: 'range() would produce 2000000 elements (max 1000000)',
      offset: 0,
    });
    expect(length(ev('range(0, 1000000)'))).toBe(1_000_000);
    const many = `[${Array.from({ length: 11 }, () => 'range(0, 1000000)').join(', ')}]`;
    expect(evalFail(many).message).toBe('expression exceeded its work budget (10000000 units)');
    // Would build a multi-gigabyte string: refused before allocating.
    expect(evalFail(`join(range(0, 1000000), '${'x'.repeat(3_000)}')`).message).toBe(
      'expression exceeded its work budget (10000000 units)',
    );
    // Each evaluation gets a fresh budget.
    expect(length(ev('range(0, 1000000)'))).toBe(1_000_000);
  });

  it('uses no eval, Function, vm or with in the implementation', () => {
    const dir = join(import.meta.dirname, '../engine/expr');
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.ts'))) {
      const code = readFileSync(join(dir, file), 'utf8');
      expect(code, file).not.toMatch(/\beval\s*\(|new\s+Function|\bFunction\s*\(|node:vm|\bwith\s*\(/);
    }
  });
});

function length(v: unknown): number {
  return (v as unknown[]).length;
}
