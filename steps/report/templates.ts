import { readdirSync, readFileSync } from 'node:fs';
import { isAbsolute, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Liquid } from 'liquidjs';
import { NonRetriableError } from '../../engine/sdk.ts';
import { formatCompact, formatMoney, formatNumber, formatPercent } from './format.ts';
import type { ReportView } from './model.ts';
import { templateView } from './template-view.ts';

/** `pipelines/templates/` of this checkout, wherever the process runs from. */
export const DEFAULT_TEMPLATE_DIR = fileURLToPath(new URL('../../pipelines/templates/', import.meta.url));

/** The page template's name in the template folder (`report.liquid`). */
export const REPORT_TEMPLATE = 'report';

export interface ReportRendererOptions {
  /** Folder holding `report.liquid` and the partials it includes. */
  templateDir: string;
}

export interface ReportRenderer {
  /** The report as one self-contained HTML page (inline CSS and SVG, nothing to fetch). */
  render(view: ReportView): Promise<string>;
}

/** A template that does not parse or render: the message starts with `file:line:col:`. */
export class ReportTemplateError extends NonRetriableError {
  override readonly name = 'ReportTemplateError';
}

/**
 * Renders reports with Liquid. Every `{{ }}` is HTML-escaped; a misspelt variable or filter
 * is an error, not an empty string. Templates are parsed once and cached, so edits to the
 * files need a new renderer (a new process).
 *
 * The charts are the only markup the template prints unescaped (`{{ charts.x | raw }}`,
 * `{{ k.trend_svg | raw }}`). That is safe because charts.ts builds those strings itself and
 * passes every data string through escapeXml: no text from SEMrush, SpyFu, Claude or the
 * customer reaches the page unescaped.
 */
export function createReportRenderer(options: ReportRendererOptions): ReportRenderer {
  const liquid = new Liquid({
    root: options.templateDir,
    extname: '.liquid',
    outputEscape: 'escape',
    strictVariables: true,
    strictFilters: true,
    cache: true,
    // Dates read the same on every server: UTC, English month names.
    timezoneOffset: 0,
    locale: 'en-US',
  });
  liquid.registerFilter('number', formatNumber);
  liquid.registerFilter('compact', formatCompact);
  liquid.registerFilter('money', formatMoney);
  liquid.registerFilter('percent', formatPercent);
  return {
    async render(view) {
      const context = templateView(view);
      try {
        return await liquid.renderFile(REPORT_TEMPLATE, context);
      } catch (err) {
        throw templateError(err, options.templateDir, Object.keys(context));
      }
    },
  };
}

interface LiquidFailure {
  message: string;
  /** liquidjs's excerpt of the template around the error, with a `>>` marker. */
  context?: string;
  token?: { file?: string; input: string; getPosition(): [number, number] };
}

/**
 * The error with its place first. liquidjs leaves the file out of some errors (an undefined
 * variable) but keeps the template's text, so the file is found by its content.
 */
function templateError(err: unknown, templateDir: string, variables: string[]): unknown {
  const failure = err as LiquidFailure;
  if (!(err instanceof Error) || !failure.token) return err;
  const file = failure.token.file ?? findTemplate(templateDir, failure.token.input) ?? join(templateDir, `${REPORT_TEMPLATE}.liquid`);
  const [line, col] = failure.token.getPosition();
  // liquidjs appends ", file:..., line:..., col:..." to its message; the prefix says that now.
  const what = failure.message.replace(/(, file:.*)?, line:\d+, col:\d+$/, '');
  const hint = what.startsWith('undefined variable') ? ` (the template sees: ${variables.join(', ')}; see the comment at the top of report.liquid)` : '';
  return new ReportTemplateError(`${shown(file)}:${line}:${col}: ${what}${hint}\n${failure.context ?? ''}`, { cause: err });
}

function findTemplate(dir: string, text: string): string | undefined {
  const files = readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.liquid'));
  const match = files.find((f) => readFileSync(join(dir, f), 'utf8') === text);
  return match && join(dir, match);
}

/** A path as the user would type it: relative to the working folder when inside it. */
function shown(file: string): string {
  const rel = relative(process.cwd(), file);
  return rel && !rel.startsWith('..') && !isAbsolute(rel) ? rel : file;
}
