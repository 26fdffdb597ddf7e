/**
 * What compiling an MJML template once saves: the time to fill one email from a template the
 * composer has compiled (Liquid over the compiled HTML, the text part and the subject) against
 * one fresh mjml2html call of the same template, the least an uncached composer would pay per
 * email. Every shipped cold email template, in this process, one after the other.
 *
 *   node --import tsx bench/email-fill.ts [--rounds 7] [--fills 1000] [--fresh 20]
 *
 * Each round times --fills fills (distinct recipients) and --fresh mjml2html calls; a figure is
 * the median over the rounds of the time per email. The ratio fill/fresh is compared with the
 * goal (≤ 0.1); the times themselves depend on the machine and are only printed. bench/email.ts
 * runs it too, through fillVsFresh.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import mjml2html from 'mjml';
import { EmailComposer } from '../steps/email/compose.ts';
import { SHIPPED_TEMPLATES, sampleEmailData, subjectOf } from '../test/helpers/email-sample.ts';
import { parseArgs, table } from './common.ts';

export const FILL_GOAL_RATIO = 0.1;
const dir = join(import.meta.dirname, '..', 'pipelines', 'templates', 'emails');

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

/** Milliseconds per call of `fn`, over `n` calls one after the other. */
async function perCall(n: number, fn: (i: number) => Promise<unknown>): Promise<number> {
  const started = performance.now();
  for (let i = 0; i < n; i++) await fn(i);
  return (performance.now() - started) / n;
}

export interface FillFigures {
  /** Per template: its name, the first email's ms, a fill's and a fresh mjml2html's median ms, and their ratio. */
  templates: { template: string; firstMs: number; fillMs: number; freshMs: number; ratio: number }[];
  median: number;
  worst: number;
}

/** Fill against fresh mjml2html for every shipped cold email template, medians over `rounds`. */
export async function fillVsFresh(options: { rounds: number; fills: number; fresh: number }): Promise<FillFigures> {
  const { rounds, fills, fresh } = options;
  const composer = new EmailComposer(dir);
  const templates: FillFigures['templates'] = [];
  for (const template of SHIPPED_TEMPLATES) {
    const source = readFileSync(join(dir, `${template}.mjml`), 'utf8');
    const subject = subjectOf(template);
    const recipients = Array.from({ length: fills }, (_, i) => sampleEmailData(template, { company_name: `Company ${i}`, contact_name: `Person${i} Smith` }));
    const first = performance.now();
    await composer.render(template, subject, recipients[0]!);
    const firstMs = performance.now() - first;
    const fillMs: number[] = [];
    const freshMs: number[] = [];
    for (let r = 0; r < rounds; r++) {
      fillMs.push(await perCall(fills, (i) => composer.render(template, subject, recipients[i]!)));
      freshMs.push(await perCall(fresh, () => mjml2html(source, { validationLevel: 'soft', keepComments: false, fonts: {} })));
    }
    templates.push({ template, firstMs, fillMs: median(fillMs), freshMs: median(freshMs), ratio: median(fillMs) / median(freshMs) });
  }
  const ratios = templates.map((t) => t.ratio);
  return { templates, median: median(ratios), worst: Math.max(...ratios) };
}

if (/email-fill\.ts$/.test(process.argv[1] ?? '')) {
  const args = parseArgs(process.argv.slice(2));
  const rounds = Number(args.get('rounds') ?? 7);
  const fills = Number(args.get('fills') ?? 1000);
  const fresh = Number(args.get('fresh') ?? 20);
  const figures = await fillVsFresh({ rounds, fills, fresh });
  const rows = figures.templates.map((t) => [t.template, t.firstMs.toFixed(1), t.fillMs.toFixed(3), t.freshMs.toFixed(2), t.ratio.toFixed(3)]);
  console.log(`email fill vs fresh mjml2html (median of ${rounds} rounds; ${fills} fills and ${fresh} fresh compiles per round), Node ${process.version}\n`);
  console.log(table(['template', 'first email ms', 'fill ms/email', 'fresh mjml2html ms', 'fill/fresh'], rows, 1));
  console.log(`\nfill/fresh: median ${figures.median.toFixed(3)}, worst ${figures.worst.toFixed(3)}; goal ≤ ${FILL_GOAL_RATIO}: ${figures.worst <= FILL_GOAL_RATIO ? 'met' : 'not met'}`);
}
