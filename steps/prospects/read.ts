import { Type } from '@sinclair/typebox';
import { configSection, defineStep, NonRetriableError } from '../../engine/sdk.ts';
import { projectResource } from '../resources.ts';
import { mergeDuplicates, type ProspectRow, ProspectRowSchema, readRecords, type Source, type SourceRecord, toProspect, unreadableRow } from './sources.ts';

/** `prospects.read` reads the named sources into prospect rows (normalised, checked, merged). */

/** One record as a row; a value that makes reading throw is that record's problem, never the whole import's. */
function rowOf(record: SourceRecord, name: string, source: Source): ProspectRow {
  try {
    return toProspect(record, name, source);
  } catch (err) {
    return unreadableRow(record, name, err);
  }
}

const countBy = (rows: ProspectRow[], reason: (r: ProspectRow) => string | null | undefined) => {
  const counts: Record<string, number> = {};
  for (const r of rows) {
    const why = reason(r);
    if (why) counts[why] = (counts[why] ?? 0) + 1;
  }
  return counts;
};

const listed = (counts: Record<string, number>) => Object.entries(counts).map(([reason, n]) => `${reason} ${n}`).join(', ');

export const prospectsRead = defineStep({
  type: 'prospects.read',
  description: 'Reads prospect sources named in the config (CSV, Phantombuster result, JSON over HTTP): domains normalised, emails checked, duplicates merged.',
  input: Type.Object(
    { sources: Type.Array(Type.String(), { minItems: 1, description: 'Names under prospect_sources in the config, read in this order.' }) },
    { additionalProperties: false },
  ),
  output: Type.Object(
    {
      rows: Type.Array(ProspectRowSchema, { description: 'One per prospect (merged), plus one per bad record with its problem.' }),
      counts: Type.Object({
        records: Type.Integer(),
        prospects: Type.Integer(),
        invalid: Type.Integer(),
        merged: Type.Integer(),
        emails_dropped: Type.Integer({ description: 'Records whose email was bad: the prospect is kept without it.' }),
      }),
      invalid_by_reason: Type.Record(Type.String(), Type.Integer()),
      emails_dropped_by_reason: Type.Record(Type.String(), Type.Integer()),
    },
    { additionalProperties: false },
  ),
  async run(ctx, input) {
    const sources = configSection<Record<string, Source>>(ctx.config, 'prospect_sources') ?? {};
    const all: ProspectRow[] = [];
    for (const name of input.sources) {
      const source = sources[name];
      if (!source) {
        const names = Object.keys(sources);
        throw new NonRetriableError(`unknown prospect source "${name}" (${names.length ? `prospect_sources in the config: ${names.join(', ')}` : 'declare it under prospect_sources in the config'})`);
      }
      const { projectDir } = await ctx.use(projectResource);
      const records = await readRecords(name, source, { projectDir, signal: ctx.signal });
      for (const record of records) all.push(rowOf(record, name, source));
      ctx.log.info({ source: name, records: records.length }, 'prospect source read');
    }
    const { rows, merged } = mergeDuplicates(all);
    const invalidByReason = countBy(rows, (r) => r.problem);
    const emailsByReason = countBy(all, (r) => r.email_problem);
    const invalid = rows.filter((r) => r.problem).length;
    const emailsDropped = all.filter((r) => r.email_problem).length;
    const reasons = listed(invalidByReason);
    const emails = emailsDropped ? `, ${emailsDropped} ${emailsDropped === 1 ? 'email' : 'emails'} dropped (${listed(emailsByReason)})` : '';
    ctx.note(`${all.length} records from ${input.sources.join(', ')}: ${rows.length - invalid} prospects, ${merged} duplicates merged, ${invalid} invalid${reasons ? ` (${reasons})` : ''}${emails}`);
    return {
      rows,
      counts: { records: all.length, prospects: rows.length - invalid, invalid, merged, emails_dropped: emailsDropped },
      invalid_by_reason: invalidByReason,
      emails_dropped_by_reason: emailsByReason,
    };
  },
});
