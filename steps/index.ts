import { StepRegistry } from '../engine/registry.ts';
import { eventEmit, filter, log, transform } from './data.ts';
import { httpRequest } from './http-request.ts';
import { sqlExecute, sqlInsert, sqlQuery, sqlUpsert } from './sql.ts';

/** Every built-in step type. A new step type is one file here plus one line below. */
export const builtinSteps = [httpRequest, sqlQuery, sqlExecute, sqlInsert, sqlUpsert, transform, filter, log, eventEmit];

export function createRegistry(): StepRegistry {
  return new StepRegistry(builtinSteps);
}
