/** A card API review (the 200 body of GET /cards/v1/hubspot/deals/{id}/review). */
export const REVIEW = {
  deal_id: '123',
  deal_name: 'Acme - Platform',
  stage: 'contractsent',
  reviewed_at: '2026-12-03T10:00:00Z',
  health: { score: 62, band: 'at_risk' },
  summary: 'Close date passed with no new date agreed.',
  manager: [
    {
      id: 'p-m1',
      text: 'What did the buyer say when the close date slipped?',
      why: 'Close date 2026-11-15 is in the past.',
      severity: 'high',
      signal: 'close_date_passed',
      feedback: null,
    },
    {
      id: 'p-m2',
      text: 'Who signs, and have we met them?',
      why: 'No economic buyer among the contacts.',
      severity: 'medium',
      signal: 'no_economic_buyer',
      feedback: 'useful',
    },
    {
      id: 'p-m3',
      text: 'What happens if they do nothing?',
      why: 'No pain recorded.',
      severity: 'medium',
      signal: 'no_pain',
      feedback: null,
    },
    {
      id: 'p-m4',
      text: 'What is the next meeting?',
      why: 'No activity for 21 days.',
      severity: 'low',
      signal: 'stale_activity',
      feedback: null,
    },
  ],
  rep: [
    {
      id: 'p-r1',
      text: 'Have I confirmed a new close date with the buyer?',
      why: 'Close date 2026-11-15 is in the past.',
      severity: 'high',
      signal: 'close_date_passed',
      feedback: null,
    },
  ],
  signals: [
    {
      code: 'close_date_passed',
      severity: 'high',
      message: 'Close date has passed',
      evidence: [{ field: 'closedate', value: '2026-11-15', at: null }],
    },
  ],
  review_url: 'https://dealcoach.example.com/api/v1/reviews/41',
};

/** A hubspot.fetch answer. */
export function answer(status, body) {
  return {
    ok: status >= 200 && status < 300,
    status,
    json: () => Promise.resolve(body),
  };
}
