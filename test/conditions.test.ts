import { describe, expect, it } from 'vitest';
import { compileCondition, ConditionError } from '../engine/expr/index.ts';
import { diagnosticsOf, pipelineFrom } from './helpers/pipeline.ts';

/** One form for every `when`: one ${{ }} expression that gives true or false, checked at load. */
describe('conditions', () => {
  it('are one ${{ }} expression, true or false', () => {
    expect(compileCondition('${{ item.score > 5 }}').holds({ item: { score: 6 } })).toBe(true);
    expect(compileCondition(false).holds({})).toBe(false);
    const bare = () => compileCondition('body.ok == true');
    expect(bare).toThrow(ConditionError);
    expect(bare).toThrow('a condition is one ${{ }} expression: write "${{ body.ok == true }}"');
    expect(() => compileCondition('paid: ${{ body.paid }}')).toThrow(/with nothing around it/);
    expect(() => compileCondition("${{ 'yes' }}")).toThrow('this condition is always "yes", not true or false');
  });

  it('say what they gave when it is not true or false', () => {
    const when = compileCondition('${{ item.email }}');
    expect(() => when.holds({ item: { email: 'ana@example.com' } })).toThrow(
      `the condition \${{ item.email }} gave the text "ana@example.com", not true or false (compare it: == null, != '', > 0 ...)`,
    );
    expect(() => when.holds({ item: {} })).toThrow(/gave undefined, not true or false/);
  });

  it('are load errors in steps and in webhook triggers, at their place', () => {
    const yaml = `
name: p
trigger:
  webhook: { when: "body.ok == true" }
steps:
  - { id: a, uses: log, when: "item.score > 5", with: { message: hi } }
  - { id: b, uses: log, when: "\${{ 'always' }}", with: { message: hi } }
`;
    expect(diagnosticsOf(yaml)).toEqual([
      'p.yaml:4:20: trigger.webhook.when: a condition is one ${{ }} expression: write "${{ body.ok == true }}"',
      'p.yaml:6:31: steps[0].when: a condition is one ${{ }} expression: write "${{ item.score > 5 }}"',
      'p.yaml:7:35: steps[1].when: this condition is always "always", not true or false',
    ]);
  });

  it('are load errors in event triggers too', () => {
    const yaml = `
name: p
trigger:
  event: { name: email.clicked, when: "event.payload.human" }
steps:
  - { id: a, uses: log, with: { message: hi } }
`;
    expect(diagnosticsOf(yaml)).toEqual(['p.yaml:4:39: trigger.event.when: a condition is one ${{ }} expression: write "${{ event.payload.human }}"']);
    const ok = pipelineFrom(yaml.replace('"event.payload.human"', '"${{ event.payload.human == true }}"'));
    expect(ok.trigger.kind === 'event' && ok.trigger.when?.holds({ event: { payload: { human: true } } })).toBe(true);
  });
});
