import { Type } from '@sinclair/typebox';

/** The parts of their input and output every sql step shares. */

export const Rows = Type.Array(Type.Record(Type.String(), Type.Unknown()), { description: 'Result rows as objects.' });
export const Params = Type.Optional(Type.Array(Type.Unknown(), { description: 'Values for $1, $2 ... (never spliced into the SQL).' }));
