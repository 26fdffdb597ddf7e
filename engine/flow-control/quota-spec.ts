import { type Static, Type } from '@sinclair/typebox';
import { parseDuration } from '../duration.ts';
import { NonRetriableError } from '../errors.ts';
import { didYouMean } from '../suggest.ts';
import { SendingCalendar, WEEKDAYS, WINDOW_PATTERN } from './calendar.ts';
import type { CalendarPeriod, RollingPeriod } from './periods.ts';

/**
 * A quota as the config declares it, and as the engine uses it: the caps (several periods
 * at once), the days and window, the spacing between effects, a ramp for new senders, and
 * per-key settings for keys declared in the config (a mailbox, a LinkedIn account).
 */

const StringEnum = <T extends string[]>(values: [...T], description?: string) => Type.Unsafe<T[number]>({ type: 'string', enum: values, description });
const DATE = '^\\d{4}-\\d{2}-\\d{2}$';

export type QuotaPeriod = Exclude<CalendarPeriod, 'calendar_month'> | RollingPeriod;
export const QUOTA_PERIODS: readonly QuotaPeriod[] = ['hour', 'day', 'rolling_24h', 'rolling_7d', 'calendar_week'];

const cap = (description: string) => Type.Optional(Type.Integer({ minimum: 0, description }));

export const CapsSchema = Type.Object(
  {
    hour: cap('Most effects per clock hour, in the timezone.'),
    day: cap('Most effects per calendar day (midnight to midnight), in the timezone.'),
    rolling_24h: cap('Most effects in any 24 hours.'),
    rolling_7d: cap('Most effects in any 7 days.'),
    calendar_week: cap('Most effects per calendar week (Monday 00:00 to Monday 00:00), in the timezone.'),
  },
  {
    additionalProperties: false,
    minProperties: 1,
    description: 'Caps by period; every one holds at once, e.g. { day: 17, rolling_7d: 85 }.',
    'x-hint': 'write caps like { day: 17, rolling_7d: 85 } (periods: hour, day, rolling_24h, rolling_7d, calendar_week)',
  },
);

export const RampSchema = Type.Object(
  {
    start: Type.Integer({ minimum: 0, description: 'Effects a day on the first day.' }),
    step: Type.Integer({ minimum: 0, description: 'Added each calendar day after, up to the day caps.' }),
    from: Type.Optional(Type.String({ pattern: DATE, description: 'The first day (YYYY-MM-DD, in the timezone); a key may have its own (keys.<key>.ramp_from).' })),
  },
  { additionalProperties: false, description: 'A new sender starts low: the day and rolling_24h caps grow from start by step a day.' },
);

export const QuotaKeySchema = Type.Object(
  {
    caps: Type.Optional(CapsSchema),
    ramp_from: Type.Optional(Type.String({ pattern: DATE, description: "This key's first ramp day (YYYY-MM-DD)." })),
    timezone: Type.Optional(Type.String({ description: "IANA timezone of this key's days and window." })),
    group: Type.Optional(Type.String({ minLength: 1, description: 'What the key belongs to (a mailbox\'s sending domain): `flows quotas` adds up each group, and a pause of the group pauses its keys.' })),
  },
  { additionalProperties: false },
);

export type QuotaKeyConfig = Static<typeof QuotaKeySchema>;

export const QuotaSchema = Type.Object(
  {
    caps: CapsSchema,
    days: Type.Optional(Type.Array(StringEnum([...WEEKDAYS]), { minItems: 1, description: 'Days of the week on which effects may happen.' })),
    window: Type.Optional(Type.String({ pattern: WINDOW_PATTERN, description: 'Local time of day when effects may happen, like "09:00-17:00".', 'x-hint': 'a window is HH:MM-HH:MM, e.g. "09:00-17:00"' })),
    timezone: Type.Optional(Type.String({ description: 'IANA timezone of days, window and calendar periods; defaults to business.timezone.' })),
    spacing: Type.Optional(Type.String({ description: 'Least time between two effects of one key, with optional jitter: "60s" or "600s..900s".' })),
    ramp: Type.Optional(RampSchema),
    per_key: Type.Optional(Type.String({ description: 'What the key is (mailbox, account): the caps hold for each key apart; the step gives it with quota_key.' })),
    keys: Type.Optional(
      Type.Record(Type.String({ minLength: 1 }), Type.Union([Type.Null(), QuotaKeySchema]), {
        description: 'The keys this quota knows, each with optional settings of its own; another key is refused at run time.',
      }),
    ),
    keys_from: Type.Optional(
      Type.String({
        description: 'Where the keys are declared instead of `keys`, e.g. email.mailboxes: the mailboxes of the email section, each with its timezone, ramp start and domain.',
      }),
    ),
    pick: Type.Optional(
      StringEnum(
        ['idle_longest'],
        'When a step gives no quota_key (an empty value), the engine picks the key: idle_longest, the one with room now that has waited longest since its last effect (rotation across mailboxes). The key it picked is the step\'s to use.',
      ),
    ),
  },
  { additionalProperties: false },
);

export type QuotaConfig = Static<typeof QuotaSchema>;

export interface Spacing {
  minMs: number;
  maxMs: number;
}

export function parseSpacing(text: string): Spacing | undefined {
  const [a, b] = text.split('..');
  const min = parseDuration(a ?? '');
  const max = b === undefined ? min : parseDuration(b);
  if (min === undefined || max === undefined || max < min) return undefined;
  return { minMs: min, maxMs: max };
}

/** The rules one key of a quota follows: what the policy decides with. */
export interface QuotaRules {
  readonly quota: string;
  /** '' for a quota without per_key. */
  readonly key: string;
  readonly caps: readonly { period: QuotaPeriod; cap: number }[];
  readonly timezone: string;
  readonly calendar: SendingCalendar;
  readonly spacing?: Spacing;
  readonly ramp?: { start: number; step: number; from: string };
}

/** A quota from a checked config, with its rules made once per key. */
export class CompiledQuota {
  private readonly byKey = new Map<string, QuotaRules>();

  constructor(
    readonly name: string,
    readonly config: QuotaConfig,
    private readonly defaultTimezone: string,
  ) {}

  get perKey(): boolean {
    return this.config.per_key !== undefined || this.config.keys !== undefined;
  }

  /** Whether the engine picks the key when a call gives none (rotation). */
  get picks(): boolean {
    return this.config.pick !== undefined && this.declaredKeys.length > 0;
  }

  /** What a key belongs to (a mailbox's domain), when the config says. */
  groupOf(key: string): string | undefined {
    return this.config.keys?.[key]?.group;
  }

  /** The keys the config declares ([] when any key is allowed). */
  get declaredKeys(): string[] {
    return Object.keys(this.config.keys ?? {});
  }

  /**
   * The rules of a key; with `windowTimezone` (the recipient's, when known) its days and
   * window are read in that timezone instead, while the caps count as before. A value that is
   * not an IANA timezone is ignored: the key's own calendar holds.
   */
  rulesFor(key: string, windowTimezone?: string): QuotaRules {
    let rules = this.byKey.get(key);
    if (!rules) {
      rules = this.compile(key);
      this.byKey.set(key, rules);
    }
    if (!windowTimezone || windowTimezone === rules.calendar.timezone || !isTimezone(windowTimezone)) return rules;
    const id = `${key}\u001f${windowTimezone}`;
    let local = this.byKeyAndZone.get(id);
    if (!local) {
      local = { ...rules, calendar: new SendingCalendar(windowTimezone, this.config.days, this.config.window) };
      this.byKeyAndZone.set(id, local);
    }
    return local;
  }

  private readonly byKeyAndZone = new Map<string, QuotaRules>();

  private compile(key: string): QuotaRules {
    const declared = this.config.keys;
    if (declared && !(key in declared)) {
      throw new NonRetriableError(
        `quota ${this.name} has no key "${key}"${didYouMean(key, Object.keys(declared)) || `; its keys: ${Object.keys(declared).join(', ')}`} (declare it under quotas.${this.name}.keys)`,
      );
    }
    const own = declared?.[key] ?? undefined;
    const timezone = own?.timezone ?? this.config.timezone ?? this.defaultTimezone;
    const caps = { ...this.config.caps, ...own?.caps };
    const ramp = this.config.ramp;
    const from = own?.ramp_from ?? ramp?.from;
    return {
      quota: this.name,
      key,
      caps: QUOTA_PERIODS.filter((p) => caps[p] !== undefined).map((period) => ({ period, cap: caps[period]! })),
      timezone,
      calendar: new SendingCalendar(timezone, this.config.days, this.config.window),
      spacing: this.config.spacing ? parseSpacing(this.config.spacing) : undefined,
      ramp: ramp && from ? { start: ramp.start, step: ramp.step, from } : undefined,
    };
  }
}

const zones = new Map<string, boolean>();

/** Whether `name` is an IANA timezone this runtime knows. */
export function isTimezone(name: string): boolean {
  let known = zones.get(name);
  if (known === undefined) {
    try {
      new Intl.DateTimeFormat('en-GB', { timeZone: name });
      known = true;
    } catch {
      known = false;
    }
    zones.set(name, known);
  }
  return known;
}

/** "teaser-email" or "mailbox:ana@one.example", as people write it in `flows quotas pause`. */
export function quotaLabel(quota: string, key: string): string {
  return key ? `${quota}:${key}` : quota;
}
