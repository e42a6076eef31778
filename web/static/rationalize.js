// The Rationalize view: the model's rationale and answer; when wrong, its rationalization with
// the hint beside it, and what STaR does with each (kept, rationalized, rejected).
import { $, models, status, describe } from './common.js';

const OUTCOMES = {
  kept: 'Right on its own: kept for fine-tuning.',
  rationalized: 'Right with the hint: kept for fine-tuning — with the plain question, without the hint.',
  rejected: 'Wrong even with the hint (or it copied the hint): not trained on.',
};

function randomSum() {
  const digits = 1 + Math.floor(Math.random() * 3);
  const hi = 10 ** digits;
  const lo = digits === 1 ? 0 : 10 ** (digits - 1);
  $('term-a').value = lo + Math.floor(Math.random() * (hi - lo));
  $('term-b').value = Math.floor(Math.random() * hi);
}

function question() {
  if ($('question-kind').value === 'arithmetic') {
    const [a, b] = [Number($('term-a').value), Number($('term-b').value)];
    // Larger numbers would be rounded on their way to the model.
    if (![a, b].every((n) => Number.isSafeInteger(n) && n >= 0)) throw new Error('the terms must be whole numbers from 0 to 9007199254740991');
    return { kind: 'arithmetic', a, b };
  }
  const choices = [...document.querySelectorAll('#choice-fields .choice')].map((c) => c.value);
  return { kind: 'choice', stem: $('choice-stem').value, choices, correct: Number($('choice-correct').value) };
}

const answerOf = (text) => (text === null || text === undefined ? 'no answer found' : `answer ${text}`);

async function answer(ev) {
  ev.preventDefault();
  const model = models.reasoner;
  if (!model) return;
  for (const id of ['rationale-question', 'rationale-text', 'rationale-verdict', 'rationalization-question', 'rationalization-text', 'rationalization-verdict']) $(id).textContent = '';
  $('rationalization-column').classList.remove('unused');
  $('reason-button').disabled = true;
  document.body.dataset.reasoning = 'yes';
  status('');
  const shots = Math.max(0, parseInt($('shots').value, 10) || 0);
  const maxTokens = Math.max(8, Math.min(512, parseInt($('reason-max-tokens').value, 10) || 200));
  try {
    const r = await model.stream('rationalize', [JSON.stringify(question()), shots, maxTokens], (piece) => {
      $(piece.phase === 'rationale' ? 'rationale-text' : 'rationalization-text').textContent += piece.text;
    }).done;
    const rec = r.record;
    $('rationale-question').textContent = r.question + (r.shots ? `(after ${r.shots} worked examples)` : '');
    $('rationale-text').textContent = rec.completion;
    const firstRight = rec.outcome === 'kept';
    $('rationale-verdict').textContent = `${answerOf(rec.answer)} — ${firstRight ? 'correct' : `wrong (gold: ${r.gold})`}`;
    $('rationale-verdict').className = `verdict ${firstRight ? 'right' : 'wrong'}`;
    if (rec.rationalization !== undefined) {
      $('rationalization-question').textContent = r.hinted_question;
      $('rationalization-text').textContent = rec.rationalization;
      const ok = rec.outcome === 'rationalized';
      $('rationalization-verdict').textContent = `${answerOf(rec.rationalization_answer)} — ${ok ? 'correct' : rec.leaked_hint ? 'copied the hint' : 'still wrong'}. ${OUTCOMES[rec.outcome]}`;
      $('rationalization-verdict').className = `verdict ${ok ? 'right' : 'wrong'}`;
    } else {
      $('rationalization-column').classList.add('unused');
      $('rationalization-verdict').textContent = `Not needed. ${OUTCOMES.kept}`;
    }
    document.body.dataset.outcome = rec.outcome;
  } catch (e) {
    status(`Answering failed: ${describe(e)}`);
  } finally {
    $('reason-button').disabled = false;
    document.body.dataset.reasoning = 'done';
  }
}

export function reasonerReady(model) {
  $('reason-button').disabled = false;
  // The built-in model learned the scratchpad in pretraining; others need worked examples.
  $('shots').value = model.knowsTheFormat ? 0 : 3;
}

export function setupRationalize() {
  $('reason-form').addEventListener('submit', answer);
  $('random-sum').addEventListener('click', randomSum);
  $('question-kind').addEventListener('change', () => {
    const arithmetic = $('question-kind').value === 'arithmetic';
    $('arithmetic-fields').hidden = !arithmetic;
    $('choice-fields').hidden = arithmetic;
  });
}
