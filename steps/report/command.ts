import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { browserConnector } from '../../connectors/browser/connector.ts';
import { claudeConnector } from '../../connectors/claude/connector.ts';
import { semrushConnector } from '../../connectors/semrush/connector.ts';
import { spyfuConnector } from '../../connectors/spyfu/connector.ts';
import { storageConnector } from '../../connectors/storage/connector.ts';
import type { ReportStorage } from '../../connectors/storage/index.ts';
import { formatDuration, type Project, Resources, sourceOf, systemClock, UsageError, usd, type Wrap, writableQueryable } from '../../engine/sdk.ts';
import { normalizeDomain } from '../domain.ts';
import { templatesResource } from '../resources.ts';
import { analyse, promptsResource, renderPrompt } from './analysis.ts';
import { collectIntel, DEFAULT_LIMITS } from '../intel/collect.ts';
import { publishReport, reportView } from './publish.ts';

interface ReportOptions {
  out?: string;
  company?: string;
  database?: string;
  json?: boolean;
}

/** `flows report <domain>`: one report on demand, through the same code as the pipelines. */
export function reportCommand(program: Command, project: (defaults?: { logLevel?: string }) => Project, wrap: Wrap): void {
  program
    .command('report')
    .description('Generate one report now: SEMrush and SpyFu data, Claude analysis, HTML and PDF (sandboxes for connectors without keys)')
    .argument('<domain>', 'the company\'s domain, e.g. example.com (a URL is reduced to its domain)')
    .option('--out <file.pdf>', 'also write the PDF here')
    .option('--company <name>', 'name printed on the report (default: the domain)')
    .option('--database <db>', 'SEMrush regional database (default: connectors.semrush.database)')
    .option('--json', 'print the result as JSON on stdout')
    .addHelpText(
      'after',
      `
The report is stored like a paid one (generated_reports, report storage) and served by the
daemon at its link. Connectors whose key is not set use their local sandbox, with a warning.`,
    )
    .action(
      wrap(async (raw: string, opts: ReportOptions) => {
        const domain = normalizeDomain(raw);
        if (!domain) throw new UsageError(`"${raw}" is not a domain name (write it like example.com)`);
        const p = project();
        const config = p.config;
        const db = await p.openDb();
        const resources = new Resources({ config, env: p.env, log: p.log, clock: systemClock, projectDir: p.dir, stateDir: '.flows' });
        const say = (text: string) => !opts.json && process.stderr.write(`${text}\n`);
        const started = performance.now();
        try {
          const stage = async <T>(label: string, work: () => Promise<T>): Promise<T> => {
            const t = performance.now();
            const result = await work();
            say(`  ${label.padEnd(34)} ${formatDuration(performance.now() - t)}`);
            return result;
          };
          say(`report for ${domain}`);
          const intel = await stage('SEMrush and SpyFu data', async () => {
            const [semrush, spyfu] = await Promise.all([resources.use(semrushConnector), resources.use(spyfuConnector)]);
            return collectIntel({ semrush, spyfu, now: () => systemClock.now() }, domain, opts.database, DEFAULT_LIMITS);
          });
          const company = opts.company ?? domain;
          const analysis = await stage('Claude analysis', async () => {
            const prompt = await renderPrompt(await resources.use(promptsResource), 'report-analysis', { company, intel });
            return analyse((await resources.use(claudeConnector)).analyst, prompt, undefined);
          });
          const report = await stage('HTML, PDF and storage', async () => {
            const [renderer, browser, storage] = await Promise.all([resources.use(templatesResource), resources.use(browserConnector), resources.use(storageConnector)]);
            const view = reportView(config, intel, analysis.analysis, company, systemClock.now(), sourceOf(await resources.use(claudeConnector)));
            return publishReport({ renderer, browser, storage, db: writableQueryable(db), config }, { view, claudeUsage: analysis.usage });
          });
          if (opts.out) {
            const pdf = await (await resources.use(storageConnector)).get(report.pdf_key);
            writeFileSync(opts.out, pdf!);
          }
          const storage = await resources.use(storageConnector);
          const files = { html_file: await localFile(storage, report.html_key), pdf_file: await localFile(storage, report.pdf_key) };
          const served = await answers(report.url);
          if (opts.json) {
            process.stdout.write(`${JSON.stringify({ domain, ...report, ...files, served, out: opts.out ?? null })}\n`);
            return 0;
          }
          const base = new URL(report.url).origin;
          const c = report.cost;
          process.stdout.write(
            [
              `report ready in ${formatDuration(performance.now() - started)}`,
              `  page: ${report.url}`,
              `  pdf:  ${report.pdf_url}${opts.out ? ` (written to ${opts.out})` : ''}`,
              `  html file: ${files.html_file ? p.display(files.html_file) : report.html_key}`,
              `  pdf file:  ${files.pdf_file ? p.display(files.pdf_file) : report.pdf_key}`,
              served ? `  served by the daemon at ${base}` : `  no daemon answers at ${base} now: the links work while flows daemon runs there`,
              `  cost: ${c.semrush_units} SEMrush units, ${c.spyfu_rows} SpyFu rows, ${c.claude_input_tokens} + ${c.claude_output_tokens} Claude tokens = ${usd(c.usd)}`,
              '',
            ].join('\n'),
          );
          return 0;
        } finally {
          await resources.close();
          await db.close();
        }
      }),
    );
}

/** Where a stored file is on this machine, for a store that keeps files locally. */
async function localFile(storage: ReportStorage, key: string): Promise<string | undefined> {
  const url = await storage.url?.(key);
  return url?.startsWith('file:') ? fileURLToPath(url) : undefined;
}

/** Whether a daemon serves this link now. */
async function answers(url: string): Promise<boolean> {
  try {
    return (await fetch(url, { method: 'HEAD', signal: AbortSignal.timeout(2000) })).ok;
  } catch {
    return false;
  }
}
