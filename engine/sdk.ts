/**
 * The engine as steps and connectors see it: the one module they import from `engine/`.
 * Everything else in the engine is internal and may change shape; a test fails when a step
 * or a connector imports anything but this file.
 *
 * - step types: defineStep and the types of a step's context, plans and effects;
 * - connectors and shared resources: defineConnector, connectorSettings, defineVerifier,
 *   defineResource, the resource registry;
 * - errors that carry their retry behaviour (the engine alone decides to retry);
 * - durations, prices, identifiers for generated SQL, expressions over step data;
 * - extension points of the daemon (pages) and the CLI (commands).
 */
export {
  type AnyStepType,
  type Artifact,
  type DatabaseStatement,
  defineStep,
  type EffectSpec,
  type PlannedEffect,
  type Queryable,
  type StepContext,
  type StepType,
} from './types.ts';
export {
  DeferredError,
  errorMessage,
  findCause,
  NeedsAttentionError,
  NonRetriableError,
  RetryAfterError,
  retryAfterMs,
  SkipItemError,
  StepTimeoutError,
} from './errors.ts';
export { DURATION_PATTERN, formatDuration, parseDuration } from './duration.ts';
export { daysSince, localDate, periodAt } from './flow-control/periods.ts';
export { isTimezone } from './flow-control/quota-spec.ts';
export type { Logger } from './log.ts';
export { usd } from './format.ts';
export { isAlive } from './processes.ts';
export { type Clock, systemClock } from './clock.ts';
export { defineResource, type Resource, type ResourceEnv, Resources, type Usable } from './resources.ts';
export { Batcher } from './batcher.ts';
export {
  type AnyConnector,
  type ClientOf,
  type ConnectorDeps,
  type ConnectorSpec,
  defineConnector,
  type LiveConfig,
  type RunningSandbox,
} from './connector.ts';
export { connectorSettings } from './connector-settings.ts';
export { type DataSource, sourceOf } from './connector-open.ts';
export { type AnyVerifierType, defineVerifier, type Verifier, type VerifierType, type WebhookRequest } from './verifier.ts';
export { configSection, type EngineConfig, unsetVariable } from './config.ts';
export type { SectionCheck, SectionProblem } from './config.ts';
export { compileCondition, type Condition, evaluate, parseExpression, renderDeep } from './expr/index.ts';
export { checkIdentifier, type InsertShape, insertSql } from './sql-insert.ts';
export { priceOf } from './cost.ts';
export { type QuotaRemark, type QuotaRemarkSource, StepRegistry } from './registry.ts';
export type { Page, PageAnswer, PageContext, PageCounter, PageRequest } from './daemon/daemon.ts';
export type { Wrap } from './cli/commands/types.ts';
export { type Project, UsageError } from './cli/project.ts';
export { writableQueryable } from './executor/context.ts';
