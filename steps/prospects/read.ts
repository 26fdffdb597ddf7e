import { Type } from '@sinclair/typebox';
import { configSection, defineStep, NonRetriableError } from '../../engine/sdk.ts';
import { projectResource } from '../resources.ts';
import { mergeDuplicates, type ProspectRow, ProspectRowSchema, readRecords, type Source, toProspect } from './sources.ts';

/** `prospects.read` reads the named sources into prospect rows (normalised, checked, merged). */

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
      counts: Type.Object({ records: Type.Integer(), prospects: Type.Integer(), invalid: Type.Integer(), merged: Type.Integer() }),
      invalid_by_reason: Type.Record(Type.String(), Type.Integer()),
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
      records.forEach((record, i) => all.push(toProspect(record, i, name, source)));
      ctx.log.info({ source: name, records: records.length }, 'prospect source read');
    }
    const { rows, merged } = mergeDuplicates(all);
    const invalidByReason: Record<string, number> = {};
    for (const r of rows) if (r.problem) invalidByReason[r.problem] = (invalidByReason[r.problem] ?? 0) + 1;
    const invalid = rows.filter((r) => r.problem).length;
    const reasons = Object.entries(invalidByReason).map(([reason, n]) => `${reason} ${n}`).join(', ');
    ctx.note(`${all.length} records from ${input.sources.join(', ')}: ${rows.length - invalid} prospects, ${merged} duplicates merged, ${invalid} invalid${reasons ? ` (${reasons})` : ''}`);
    return { rows, counts: { records: all.length, prospects: rows.length - invalid, invalid, merged }, invalid_by_reason: invalidByReason };
  },
});
