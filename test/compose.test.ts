import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { NonRetriableError } from '../engine/sdk.ts';
import { chooseVariant, EmailComposer } from '../steps/email/compose.ts';
import { SHIPPED_TEMPLATES, sampleEmailData, subjectOf, TEASERS } from './helpers/email-sample.ts';

/**
 * The cold email channel's composition: MJML templates compiled once per composer and filled
 * per recipient through Liquid, every {{ }} HTML-escaped in the HTML part; a plain-text part
 * beside each; teaser variants chosen deterministically by weight.
 */

const mjmlCalls = vi.hoisted(() => ({ count: 0 }));
vi.mock('mjml', async (importOriginal) => {
  const real = (await importOriginal<{ default: (...args: unknown[]) => Promise<unknown> }>()).default;
  return {
    default: (...args: unknown[]) => {
      mjmlCalls.count++;
      return real(...args);
    },
  };
});

const DIR = join(import.meta.dirname, '..', 'pipelines', 'templates', 'emails');
const HTML_TAG = /<\/?[a-z][^>]*>/i;

const scratch = mkdtempSync(join(tmpdir(), 'flows-compose-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function scratchDir(files: Record<string, string>): string {
  const dir = mkdtempSync(join(scratch, 'emails-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

const MINIMAL = `<mjml>
  <mj-body>
    <mj-section>
      <mj-column>
        <mj-text>Hello {{ prospect.company_name }}</mj-text>
      </mj-column>
    </mj-section>
  </mj-body>
</mjml>
`;

describe('EmailComposer', () => {
  it('ships a teaser in two variants per category, two follow-ups and the report delivery, each with its text part', () => {
    const files = readdirSync(DIR);
    for (const name of SHIPPED_TEMPLATES) {
      expect(files, name).toContain(`${name}.mjml`);
      expect(files, name).toContain(`${name}.txt.liquid`);
    }
    expect(files.filter((f) => f.endsWith('.mjml')).sort()).toEqual(SHIPPED_TEMPLATES.map((t) => `${t}.mjml`).sort());
  });

  it('compiles each template with mjml once, however many emails are filled from it at once', async () => {
    const composer = new EmailComposer(DIR);
    const before = mjmlCalls.count;
    const emails = await Promise.all(
      Array.from({ length: 1000 }, (_, i) =>
        composer.render('teaser-growth-a', subjectOf('teaser-growth-a'), sampleEmailData('teaser-growth-a', { company_name: `Company ${i}` })),
      ),
    );
    expect(mjmlCalls.count - before).toBe(1);
    expect(emails[0]!.html).toContain('Company 0');
    expect(emails[999]!.html).toContain('Company 999');
    expect(emails[999]!.subject).toBe('Company 999 in search');

    await composer.render('teaser-growth-b', 'x', sampleEmailData('teaser-growth-b'));
    await composer.render('teaser-growth-a', 'x', sampleEmailData('teaser-growth-a'));
    expect(mjmlCalls.count - before).toBe(2);
    expect(new EmailComposer(DIR)).not.toBe(composer);
  });

  describe.each(SHIPPED_TEMPLATES)('%s', (template) => {
    const composer = new EmailComposer(DIR);
    const data = sampleEmailData(template) as ReturnType<typeof sampleEmailData> & {
      links: Record<string, string>;
      business: Record<string, string>;
    };

    it('renders with the address, the unsubscribe link and the report link in both parts', async () => {
      const email = await composer.render(template, subjectOf(template), data);
      for (const part of [email.html, email.text]) {
        expect(part).toContain('Intel Mail One LLC');
        expect(part).toContain('1200 Larimer Street, Suite 400, Denver, CO 80204, USA');
        expect(part).toContain(data.links.unsubscribe);
        expect(part).toContain(data.links.report);
        expect(part).toContain('Ana Ruiz');
        expect(part).toMatch(/Hi Maria,/);
      }
      expect(email.html).toContain(`href="${data.links.unsubscribe}"`);
      expect(email.html).toContain(`href="${data.links.report}"`);
      expect(email.html).toContain(`href="${data.links.honeypot}"`);
      expect(email.text).not.toContain(data.links.honeypot);
      expect(email.html).not.toMatch(/\{\{|\{%/);
    });

    it('has a plain-text part without HTML tags and greets without a name when none is known', async () => {
      const email = await composer.render(template, subjectOf(template), sampleEmailData(template, { contact_name: '' }));
      expect(email.text).not.toMatch(HTML_TAG);
      expect(email.text).not.toMatch(/&(amp|lt|gt|quot|#\d+);/);
      expect(email.text).toMatch(/^Hi,$/m);
      expect(email.text).not.toMatch(/\n{3,}/);
      expect(email.html).not.toContain('Hi ,');
    });

    it('includes the tracking pixel only when one is given', async () => {
      const plain = await composer.render(template, 'x', data);
      expect(plain.html).not.toMatch(/<img/i);
      const pixel = 'https://reports.intel-mail-one.example/p/cGl4ZWw.gif';
      const tracked = await composer.render(template, 'x', sampleEmailData(template, { tracking_pixel: pixel }));
      expect(tracked.html).toMatch(new RegExp(`<img[^>]+src="${pixel.replace(/[.]/g, '\\.')}"[^>]+width="1" height="1"`));
      expect(tracked.text).not.toContain(pixel);
    });
  });

  it('escapes every {{ }} of the HTML part; the text part and the subject get the value verbatim', async () => {
    const composer = new EmailComposer(DIR);
    const company = '<script>alert(1)</script> & Co';
    for (const template of ['teaser-competitor-ahead-b', 'follow-up-2']) {
      const email = await composer.render(template, '{{ prospect.company_name }}\n  in search ', sampleEmailData(template, { company_name: company }));
      expect(email.html).toContain('&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co');
      expect(email.html).not.toContain('<script>');
      expect(email.text).toContain(company);
      expect(email.subject).toBe(`${company} in search`);
    }
  });

  it('names the file and the line of an MJML error', async () => {
    const broken = MINIMAL.replace('<mj-text>', '<mj-text colour="red">');
    const dir = scratchDir({ 'broken.mjml': broken, 'broken.txt.liquid': 'Hello' });
    const error = await new EmailComposer(dir).render('broken', 'x', {}).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NonRetriableError);
    expect((error as Error).message).toContain(join(dir, 'broken.mjml'));
    expect((error as Error).message).toMatch(/broken\.mjml:5: .*colour/);

    const unknownTag = scratchDir({ 'tag.mjml': MINIMAL.replace('mj-column>', 'mj-colum>').replace('mj-column>', 'mj-colum>'), 'tag.txt.liquid': 'Hello' });
    await expect(new EmailComposer(unknownTag).render('tag', 'x', {})).rejects.toThrow(/tag\.mjml:4: .*mj-colum/);
  });

  it('names the missing file', async () => {
    const dir = scratchDir({ 'html-only.mjml': MINIMAL, 'text-only.txt.liquid': 'Hello' });
    const composer = new EmailComposer(dir);
    const data = { prospect: { company_name: 'Acme' } };
    await expect(composer.render('nowhere', 'x', data)).rejects.toThrow(NonRetriableError);
    const both = (await composer.render('nowhere', 'x', data).catch((e: unknown) => e)) as Error;
    expect(both.message).toBe(`email template: no file ${join(dir, 'nowhere.mjml')} and no file ${join(dir, 'nowhere.txt.liquid')}`);
    await expect(composer.render('html-only', 'x', data)).rejects.toThrow(join(dir, 'html-only.txt.liquid'));
    await expect(composer.render('text-only', 'x', data)).rejects.toThrow(join(dir, 'text-only.mjml'));
  });

  it('takes a template name, not a path', async () => {
    const composer = new EmailComposer(join(DIR, 'nested'));
    for (const name of ['../teaser-growth-a', '/etc/passwd', 'Teaser', '']) {
      await expect(composer.render(name, 'x', sampleEmailData('teaser-growth-a'))).rejects.toThrow(/expected a name like/);
    }
  });

  it('refuses a variable the data lacks, naming the template', async () => {
    const dir = scratchDir({ 'minimal.mjml': MINIMAL, 'minimal.txt.liquid': 'Hello {{ prospect.company_name }}' });
    const composer = new EmailComposer(dir);
    expect((await composer.render('minimal', 'Hi {{ prospect.company_name }}', { prospect: { company_name: 'Acme' } })).subject).toBe('Hi Acme');
    const error = await composer.render('minimal', 'x', { prospect: {} }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NonRetriableError);
    expect((error as Error).message).toMatch(/minimal.*prospect\.company_name/);
    await expect(composer.render('minimal', '{{ nothing }}', { prospect: { company_name: 'Acme' } })).rejects.toThrow(/subject.*nothing/);
  });
});

describe('chooseVariant', () => {
  const seeds = Array.from({ length: 10_000 }, (_, i) => `campaign-7:prospect-${i}@example.com`);

  function shares<T extends { name: string }>(variants: readonly T[]): Map<string, number> {
    const counts = new Map(variants.map((v) => [v.name, 0]));
    for (const seed of seeds) {
      const name = chooseVariant(seed, variants).name;
      counts.set(name, counts.get(name)! + 1);
    }
    return new Map([...counts].map(([name, n]) => [name, (100 * n) / seeds.length]));
  }

  it('splits evenly by default', () => {
    const split = shares([{ name: 'a' }, { name: 'b' }]);
    expect(Math.abs(split.get('a')! - 50)).toBeLessThan(2);
    expect(Math.abs(split.get('b')! - 50)).toBeLessThan(2);
  });

  it('follows the weights, and never picks a variant of weight 0', () => {
    const split = shares([{ name: 'a', weight: 3 }, { name: 'off', weight: 0 }, { name: 'b', weight: 1 }, { name: 'c' }]);
    expect(Math.abs(split.get('a')! - 60)).toBeLessThan(2);
    expect(Math.abs(split.get('b')! - 20)).toBeLessThan(2);
    expect(Math.abs(split.get('c')! - 20)).toBeLessThan(2);
    expect(split.get('off')).toBe(0);
    expect(shares([{ name: 'off', weight: 0 }, { name: 'only', weight: 2 }]).get('only')).toBe(100);
  });

  it('gives the same seed the same variant, whatever else was chosen before', () => {
    const variants = TEASERS.slice(0, 2).map((name) => ({ name }));
    const first = seeds.map((s) => chooseVariant(s, variants).name);
    const again = [...seeds].reverse().map((s) => chooseVariant(s, [...variants]).name).reverse();
    expect(again).toEqual(first);
    expect(new Set(first).size).toBe(2);
  });

  it('returns the variant object itself', () => {
    const variants = [{ name: 'a', subject: 'one' }, { name: 'b', subject: 'two' }] as const;
    expect(variants).toContain(chooseVariant('x', variants));
  });

  it('refuses an empty list, weights that are all 0, and a weight that is negative or not a number', () => {
    expect(() => chooseVariant('x', [])).toThrow(/no variants/);
    expect(() => chooseVariant('x', [{ name: 'a', weight: 0 }, { name: 'b', weight: 0 }])).toThrow(/weight/);
    expect(() => chooseVariant('x', [{ name: 'a', weight: -1 }, { name: 'b' }])).toThrow(/"a".*-1/);
    expect(() => chooseVariant('x', [{ name: 'a', weight: Number.NaN }])).toThrow(/"a"/);
  });
});
