import { type TSchema, Type } from '@sinclair/typebox';
import type { StepRegistry } from '../registry.ts';
import { acceptExpressionsWithin, EXPRESSION_DEFINITION } from './expression-schema.ts';

/**
 * The shape of a pipeline file. The loader validates against the base schema (where `with`
 * is any mapping) and then each step's `with` against its own step type; the editor schema
 * in schemas/ is generated from the registry so `uses` and `with` autocomplete.
 */

const id = (description: string) =>
  Type.String({ pattern: '^[a-z][a-z0-9_-]*$', description, 'x-hint': 'use lower-case letters, digits, "-" and "_", starting with a letter' });
const duration = (description: string) => Type.String({ description, 'x-hint': 'write a duration like "30s", "5m" or "1d"' });

export const ScheduleSchema = Type.Object(
  {
    cron: Type.String({ description: 'Cron expression (5 or 6 fields), e.g. "0 22 * * 0" for Sundays at 22:00.' }),
    timezone: Type.Optional(Type.String({ description: 'IANA timezone the cron is read in, e.g. "Europe/London" (default: business.timezone in the config).' })),
    catchup: Type.Optional(
      Type.Unsafe<'none' | 'last' | 'all'>({
        type: 'string',
        enum: ['none', 'last', 'all'],
        description: 'Fires missed while no daemon ran: none, the last one only (default), or all of them.',
      }),
    ),
    overlap: Type.Optional(
      Type.Unsafe<'skip' | 'queue'>({
        type: 'string',
        enum: ['skip', 'queue'],
        description: 'A fire while the previous run is still going: skip it (default), or queue it to run after.',
      }),
    ),
  },
  { additionalProperties: false },
);

export const TriggerSchema = Type.Object(
  {
    schedule: Type.Optional(ScheduleSchema),
    webhook: Type.Optional(
      Type.Object(
        {
          path: Type.Optional(Type.String({ pattern: '^/[A-Za-z0-9/_.-]*$', description: 'Route path (default /hooks/<pipeline name>), e.g. /hooks/stripe.' })),
          verify: Type.Optional(Type.String({ description: 'Name of a signature verifier in the config (webhooks.verifiers); without one, any caller may start a run.' })),
          events: Type.Optional(
            Type.Array(Type.String(), { minItems: 1, description: 'Only these event types (the body\'s "type") start a run; others are answered 200 and ignored.' }),
          ),
          when: Type.Optional(
            Type.String({
              description:
                'Expression over body, headers and query; a request for which it is not true is answered 200 and ignored, e.g. ${{ body.data.object.payment_status == "paid" }}.',
            }),
          ),
          event_id: Type.Optional(
            Type.String({ description: 'Expression giving the provider\'s event id, each processed once (default body.id for stripe, else a hash of the body).' }),
          ),
          inputs: Type.Optional(
            Type.Record(Type.String(), Type.Unknown(), {
              description: 'Run inputs, by expressions over body, headers and query (default: the whole body as input "event").',
            }),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    event: Type.Optional(
      Type.Object(
        {
          name: Type.String({ pattern: '^[a-z][a-z0-9_.-]*$', description: 'The event that starts a run, e.g. email.clicked.' }),
          when: Type.Optional(
            Type.String({ description: 'A condition over event (type, key, payload, occurred_at): an event for which it is false starts nothing, e.g. ${{ event.payload.human == true }}.' }),
          ),
          dedupe: Type.Optional(
            Type.Object(
              {
                key: Type.String({ description: 'Expression over event giving what a run is about, e.g. ${{ event.key }}.' }),
                window: duration('At most one run per key in this window, e.g. "30d".'),
              },
              { additionalProperties: false },
            ),
          ),
          inputs: Type.Optional(
            Type.Record(Type.String(), Type.Unknown(), {
              description: 'Run inputs, by expressions over event (type, key, payload, occurred_at); default: the event as input "event".',
            }),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    manual: Type.Optional(Type.Object({}, { additionalProperties: false })),
  },
  {
    additionalProperties: false,
    minProperties: 1,
    maxProperties: 1,
    description: 'What starts a run: exactly one of schedule, webhook, event, manual.',
    'x-hint': 'write exactly one of schedule, webhook, event or manual',
  },
);

export const ForeachQuerySchema = Type.Object(
  {
    query: Type.String({ description: 'A SELECT whose rows are the items; paged, never loaded whole.' }),
    params: Type.Optional(Type.Array(Type.Unknown(), { description: 'Values for $1, $2 ... in the query.' })),
    key: Type.Optional(Type.String({ description: 'Unique, sortable column used for paging and as the item key (default id).' })),
    page_size: Type.Optional(Type.Integer({ minimum: 1, maximum: 10000, description: 'Rows per page (default 500).' })),
  },
  { additionalProperties: false },
);

export const RetrySchema = Type.Object(
  {
    attempts: Type.Integer({ minimum: 1, maximum: 100, description: 'Attempts in all, the first included (default 3).' }),
    backoff: Type.Optional(duration('First wait between attempts; doubles each time, with jitter (default "1s").')),
    max_backoff: Type.Optional(duration('Longest wait between attempts (default "5m").')),
  },
  { additionalProperties: false },
);

const stepProperties = {
  id: Type.String({
    pattern: '^[a-z][a-z0-9_]*$',
    description: 'Stable id of the step, used in expressions (steps.<id>.output) and to resume runs.',
    'x-hint': 'use lower-case letters, digits and "_" (not "-": ids are used in expressions), starting with a letter',
  }),
  name: Type.Optional(Type.String({ description: 'A human title for logs and tables.' })),
  uses: Type.String({ description: 'The step type.' }),
  with: Type.Optional(Type.Record(Type.String(), Type.Unknown(), { description: "The step type's inputs; strings may hold ${{ }} expressions." })),
  foreach: Type.Optional(
    Type.Unsafe({
      description: 'Run the step once per item: an expression giving a list, or a database query paged through.',
      anyOf: [Type.String(), ForeachQuerySchema],
    }),
  ),
  item_key: Type.Optional(Type.String({ description: 'Expression giving each item a stable key (default item.id, or its position).' })),
  keep_results: Type.Optional(
    Type.Integer({
      minimum: 0,
      maximum: 1000,
      description: 'How many item outputs a foreach step keeps as its results (default 1000); 0 when no later step reads them, so large outputs cost neither memory nor disk.',
    }),
  ),
  concurrency: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, description: 'Items in flight at once (default 1).' })),
  when: Type.Optional(
    Type.Unsafe({ anyOf: [Type.String(), Type.Boolean()], description: 'Run only when this condition holds (per item in a foreach): one ${{ }} expression giving true or false, e.g. ${{ item.score > 5 }}.' }),
  ),
  retry: Type.Optional(RetrySchema),
  timeout: Type.Optional(duration('Time limit of one attempt, e.g. "30s".')),
  quota: Type.Optional(Type.String({ description: 'Name of a quota in the config that caps this step\'s effects.' })),
  rate_limit: Type.Optional(Type.String({ description: 'Name of a rate limit in the config that each attempt of this step waits for.' })),
  budget: Type.Optional(
    Type.String({ description: 'Name of a budget in the config: each call reserves its most expensive estimate first, and a call that would pass the budget waits for the next period.' }),
  ),
  quota_key: Type.Optional(
    Type.String({ description: 'For a quota with per_key: expression giving the key this effect counts under (e.g. the sender domain).' }),
  ),
  quota_timezone: Type.Optional(
    Type.String({
      description:
        "Expression giving the IANA timezone this effect's sending days and window are read in (e.g. the recipient's, \"${{ item.timezone }}\"); empty or not a timezone: the quota key's own. Caps still count in the quota's timezone.",
    }),
  ),
  in_doubt: Type.Optional(
    Type.Unsafe<'stop' | 'repeat'>({
      type: 'string',
      enum: ['stop', 'repeat'],
      description:
        'An effect a crash left in doubt (started, never confirmed): stop (default) waits for a person to settle it with flows effects resolve; repeat performs it again, for calls that are harmless to repeat (a paid read). Repeats are counted in the run summary.',
    }),
  ),
  key: Type.Optional(
    Type.String({ description: "Expression for the effect's idempotency key (default: run, step and item). Make it span runs to never repeat an effect." }),
  ),
};

const { foreach: _f, item_key: _k, concurrency: _c, keep_results: _r, ...subStepProperties } = stepProperties;

/** A step inside a foreach group: runs once per item, after the group's earlier steps. */
export const SubStepSchema = Type.Object(subStepProperties, { additionalProperties: false });

export const StepSchema = Type.Object(
  {
    ...stepProperties,
    uses: Type.Optional(stepProperties.uses),
    steps: Type.Optional(
      Type.Array(SubStepSchema, {
        minItems: 1,
        description: 'A foreach group: these steps run in order for each item (instead of uses/with).',
      }),
    ),
  },
  { additionalProperties: false },
);

export const PipelineSchema = Type.Object(
  {
    $schema: Type.Optional(Type.String()),
    name: id('The pipeline name, used by `flows run <name>`.'),
    description: Type.Optional(Type.String()),
    trigger: TriggerSchema,
    inputs: Type.Optional(
      Type.Record(Type.String({ pattern: '^[a-z][a-z0-9_]*$' }), Type.Record(Type.String(), Type.Unknown()), {
        additionalProperties: false,
        description: 'Run inputs by name, each a JSON Schema; an input without a default is required.',
      }),
    ),
    steps: Type.Array(StepSchema, { minItems: 1 }),
  },
  { additionalProperties: false },
);

/**
 * The editor schema: the base schema with `uses` and `with` specialised per step type. Values
 * inside `with` may be ${{ }} expressions, as the loader allows (see expression-schema.ts).
 */
export function editorPipelineSchema(registry: StepRegistry): TSchema {
  const steps = registry.all();
  const uses = { type: 'string', enum: steps.map((s) => s.type), description: 'The step type.' };
  const allOf = steps.map((s) => ({
    if: { properties: { uses: { const: s.type } }, required: ['uses'] },
    then: { properties: { with: { ...(acceptExpressionsWithin(s.input) as object), description: s.description } } },
  }));
  const sub = { ...SubStepSchema, properties: { ...SubStepSchema.properties, uses }, allOf };
  const step = {
    ...StepSchema,
    properties: { ...StepSchema.properties, uses, steps: { ...StepSchema.properties.steps, items: sub } },
    allOf,
  };
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    title: 'flows pipeline',
    ...PipelineSchema,
    properties: { ...PipelineSchema.properties, steps: { type: 'array', minItems: 1, items: step } },
    definitions: { expression: EXPRESSION_DEFINITION },
  } as TSchema;
}
