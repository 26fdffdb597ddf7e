import { InvalidArgumentError } from 'commander';

/**
 * Parsers of option values: a value that is not one is a usage error (exit 2) saying what
 * to write, never a NaN that reaches a query.
 */
export function integerOption(options: { min: number; max?: number; example: number }): (value: string) => number {
  const what = options.min === 1 && options.max === undefined ? 'a positive integer' : `an integer from ${options.min}${options.max === undefined ? '' : ` to ${options.max}`}`;
  return (value) => {
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || n < options.min || (options.max !== undefined && n > options.max)) {
      throw new InvalidArgumentError(`Expected ${what}, like ${options.example}.`);
    }
    return n;
  };
}
