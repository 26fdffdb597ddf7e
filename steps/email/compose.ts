import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Liquid, type Template } from 'liquidjs';
import { defineResource, errorMessage, NonRetriableError } from '../../engine/sdk.ts';

/**
 * The cold email channel's emails, from MJML templates in pipelines/templates/emails/:
 * `<name>.mjml` gives the HTML part, `<name>.txt.liquid` the plain-text part.
 *
 * MJML is slow (milliseconds per email) and the same for every recipient, so each template is
 * compiled once per composer with its Liquid placeholders left in place; the HTML that comes
 * out is parsed by Liquid once, and each email is a fill of that parsed template. Every {{ }}
 * of the HTML part is HTML-escaped; the text part and the subject get values verbatim.
 *
 * The data a template sees (missing variables are errors, not blanks):
 * - `prospect`: { company_name, contact_name, first_name (first word of contact_name, may be
 *   blank), domain, category, category_reason (one sentence: why the prospect is in its
 *   category), metrics (object of the category's figures) }
 * - `insight`: one sentence, a specific finding about the prospect's site
 * - `links`: { report, honeypot, unsubscribe }, signed URLs. The honeypot is in the HTML part
 *   only, as an anchor with no text and no style: nothing renders, so no person sees or clicks
 *   it, while a link scanner that fetches every href does. It is not hidden with display:none
 *   or visibility:hidden, which SpamAssassin counts as invisible text (__STY_INVIS: nothing
 *   alone, but it feeds rules worth up to 3.5 points, FONT_INVIS_POSTEXTRAS, STY_INVIS_DIRECT,
 *   HTML_TEXT_INVISIBLE_STYLE); an empty anchor matches none of its rules.
 * - `business`: { name, address } (the footer of every email)
 * - `sender`: { name, email }
 * - `subject`: the rendered subject
 * - `tracking_pixel`: a URL, or blank (the default). Only when set does the template add a 1x1
 *   image; it is off by default because remote images in a cold email hurt its deliverability.
 *
 * MJML's mj-include stays off: a template is one file, read from this folder only.
 */

export interface EmailContent {
  subject: string;
  html: string;
  text: string;
}

/** A template ready to fill: both parts parsed by Liquid, the HTML already through MJML. */
interface Compiled {
  html: Template[];
  text: Template[];
}

type Mjml2Html = typeof import('mjml');

let mjml: Promise<Mjml2Html> | undefined;

/** mjml is loaded on the first compile: reading the step's schema costs nothing. */
function loadMjml(): Promise<Mjml2Html> {
  mjml ??= import('mjml').then((m) => m.default);
  return mjml;
}

/** Reads a template's files, naming every missing one (in the order given) in one error. */
async function readTemplates(files: string[]): Promise<string[]> {
  const results = await Promise.allSettled(files.map((file) => readFile(file, 'utf8')));
  const missing = files.filter((_, i) => {
    const r = results[i]!;
    return r.status === 'rejected' && (r.reason as NodeJS.ErrnoException).code === 'ENOENT';
  });
  if (missing.length > 0) throw new NonRetriableError(`email template: no file ${missing.join(' and no file ')}`);
  return results.map((r) => {
    if (r.status === 'rejected') throw r.reason;
    return r.value;
  });
}

/** MJML to HTML, refusing any validation error with the file and line of each. */
async function compileMjml(file: string, source: string): Promise<string> {
  const mjml2html = await loadMjml();
  let result: Awaited<ReturnType<Mjml2Html>>;
  try {
    result = await mjml2html(source, { validationLevel: 'soft', keepComments: false, fonts: {}, filePath: file });
  } catch (err) {
    throw new NonRetriableError(`${file}: not valid MJML: ${errorMessage(err)}`, { cause: err });
  }
  if (result.errors.length) {
    const problems = result.errors.map((e) => `${file}:${e.line}: ${e.message} (${e.tagName})`);
    throw new NonRetriableError(`not valid MJML:\n${problems.join('\n')}`);
  }
  return result.html;
}

/** A file name in the folder, never a path out of it. */
const TEMPLATE_NAME = /^[a-z0-9][a-z0-9_-]*$/;

/** Subjects come from campaign settings, a handful per process; the cap only guards against misuse. */
const MAX_SUBJECTS = 1000;

/** Plain text reads best without the blank lines that Liquid's tags leave behind. */
function tidyText(text: string): string {
  return `${text.replace(/[ \t]+$/gm, '').replace(/\n{3,}/g, '\n\n').trim()}\n`;
}

export class EmailComposer {
  private readonly compiled = new Map<string, Promise<Compiled>>();
  private readonly subjects = new Map<string, Template[]>();
  private readonly htmlLiquid: Liquid;
  private readonly textLiquid: Liquid;

  /** `dir`: a project's templates/emails folder. */
  constructor(readonly dir: string) {
    const common = { root: dir, strictVariables: true, strictFilters: true, cache: true } as const;
    this.htmlLiquid = new Liquid({ ...common, outputEscape: 'escape' });
    this.textLiquid = new Liquid(common);
  }

  /**
   * One email from `<template>.mjml` and `<template>.txt.liquid`. `subject` is a Liquid
   * string, rendered verbatim on one line. Problems with a template (a missing file, invalid
   * MJML, a variable the data lacks) are NonRetriableErrors: the next try would fail the same.
   */
  async render(template: string, subject: string, data: Record<string, unknown>): Promise<EmailContent> {
    if (!TEMPLATE_NAME.test(template)) throw new NonRetriableError(`email template ${JSON.stringify(template)}: expected a name like "teaser-growth-a" (a-z, 0-9, - and _)`);
    const compiled = await this.compile(template);
    const renderedSubject = this.renderSubject(subject, data);
    const scope = { ...data, tracking_pixel: data.tracking_pixel ?? '', subject: renderedSubject };
    // A fill is pure computation on parsed templates: Liquid's synchronous renderer does it
    // without a promise per tag, several times faster than its asynchronous one.
    try {
      const html: string = this.htmlLiquid.renderSync(compiled.html, scope);
      const text: string = this.textLiquid.renderSync(compiled.text, scope);
      return { subject: renderedSubject, html, text: tidyText(text) };
    } catch (err) {
      throw new NonRetriableError(`email template "${template}": ${errorMessage(err)}`, { cause: err });
    }
  }

  /** The compile of a template, shared by every email made from it, even those asked for at once. */
  private compile(template: string): Promise<Compiled> {
    let compiled = this.compiled.get(template);
    if (!compiled) {
      compiled = this.compileNow(template);
      this.compiled.set(template, compiled);
      // A failed compile is not kept: once the file is fixed, the next email compiles it.
      compiled.catch(() => this.compiled.delete(template));
    }
    return compiled;
  }

  private async compileNow(template: string): Promise<Compiled> {
    const mjmlFile = join(this.dir, `${template}.mjml`);
    const textFile = join(this.dir, `${template}.txt.liquid`);
    const [mjmlSource, textSource] = (await readTemplates([mjmlFile, textFile])) as [string, string];
    const html = await compileMjml(mjmlFile, mjmlSource);
    try {
      return { html: this.htmlLiquid.parse(html, mjmlFile), text: this.textLiquid.parse(textSource, textFile) };
    } catch (err) {
      throw new NonRetriableError(`email template "${template}": ${errorMessage(err)}`, { cause: err });
    }
  }

  private renderSubject(subject: string, data: Record<string, unknown>): string {
    try {
      let parsed = this.subjects.get(subject);
      if (!parsed) {
        parsed = this.textLiquid.parse(subject);
        if (this.subjects.size >= MAX_SUBJECTS) this.subjects.clear();
        this.subjects.set(subject, parsed);
      }
      const rendered: string = this.textLiquid.renderSync(parsed, data);
      return rendered.replace(/\s*[\r\n]+\s*/g, ' ').trim();
    } catch (err) {
      throw new NonRetriableError(`email subject ${JSON.stringify(subject)}: ${errorMessage(err)}`, { cause: err });
    }
  }
}

/** The composer of the project's templates/emails folder, shared by every run of the process. */
export const emailComposerResource = defineResource<EmailComposer>({
  name: 'email-composer',
  create: (env) => new EmailComposer(join(env.projectDir, 'templates', 'emails')),
});

/**
 * The variant for `seed` (say, the campaign and the prospect's address): the same seed always
 * gets the same variant, and over many seeds each variant gets its share of the weights.
 * `weight` defaults to 1; a variant of weight 0 is never chosen.
 */
export function chooseVariant<T extends { name: string; weight?: number }>(seed: string, variants: readonly T[]): T {
  if (!variants.length) throw new NonRetriableError('no variants to choose from');
  let total = 0;
  for (const variant of variants) {
    const weight = variant.weight ?? 1;
    if (!Number.isFinite(weight) || weight < 0) throw new NonRetriableError(`variant "${variant.name}": weight must be a number ≥ 0, got ${weight}`);
    total += weight;
  }
  if (total === 0) throw new NonRetriableError(`every variant has weight 0 (${variants.map((v) => v.name).join(', ')}): give one a weight above 0`);
  // 48 bits of the seed's hash, as a point in [0, total).
  const point = (createHash('sha256').update(seed).digest().readUIntBE(0, 6) / 2 ** 48) * total;
  let cumulative = 0;
  let last = variants[0]!;
  for (const variant of variants) {
    const weight = variant.weight ?? 1;
    if (weight === 0) continue;
    cumulative += weight;
    last = variant;
    if (point < cumulative) return variant;
  }
  return last;
}
