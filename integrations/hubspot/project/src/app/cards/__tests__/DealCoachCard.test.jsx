import {
  Alert,
  Button,
  EmptyState,
  Heading,
  Link,
  LoadingSpinner,
  Tag,
  Text,
} from '@hubspot/ui-extensions';
import { createRenderer } from '@hubspot/ui-extensions/testing';
import React from 'react';
import { beforeEach, describe, expect, it, vi } from 'vitest';

import { DealCoachCard } from '../DealCoachCard.jsx';
import { answer, REVIEW } from './review.js';

const { mockFetch } = vi.hoisted(() => ({ mockFetch: vi.fn() }));

vi.mock('@hubspot/ui-extensions', async (importOriginal) => {
  const actual = await importOriginal();
  return { ...actual, hubspot: { ...actual.hubspot, fetch: (...args) => mockFetch(...args) } };
});

const BASE = 'https://dealcoach.example.com/cards/v1/hubspot/deals/123';

function setup(location = 'crm.record.tab', props = {}) {
  const renderer = createRenderer(location);
  renderer.render(<DealCoachCard {...props} />);
  return renderer;
}

function withReview(changes) {
  return { ...REVIEW, ...changes };
}

describe.each([
  ['crm.record.tab', {}],
  ['crm.record.sidebar', { compact: true }],
])('DealCoachCard on %s', (location, props) => {
  beforeEach(() => {
    mockFetch.mockReset();
  });

  it('shows a spinner while the review loads', async () => {
    mockFetch.mockReturnValue(new Promise(() => {}));
    const { findByTestId, maybeFind } = setup(location, props);

    expect(findByTestId(LoadingSpinner, 'loading').props.label).toBe("Loading dealcoach's review");
    // the remote DOM does not change while the fetch is pending: vitest's own waitFor
    await vi.waitFor(() =>
      expect(mockFetch).toHaveBeenCalledWith(`${BASE}/review`, { method: 'GET', timeout: 10000 }),
    );
    expect(findByTestId(LoadingSpinner, 'loading')).toBeDefined();
    expect(maybeFind(Tag)).toBeNull();
  });

  it('shows an at-risk review with the top questions and their why', async () => {
    mockFetch.mockResolvedValue(answer(200, REVIEW));
    const { findByTestId, maybeFindByTestId, waitFor } = setup(location, props);
    await waitFor(() => expect(maybeFindByTestId(Tag, 'band')).not.toBeNull());

    const band = findByTestId(Tag, 'band');
    expect(band.text).toBe('At risk');
    expect(band.props.variant).toBe('warning');
    expect(findByTestId(Text, 'score').text).toBe('62/100');
    expect(findByTestId(Heading, 'view-heading').text).toBe('Questions to ask the rep');
    expect(findByTestId(Text, 'question-p-m1').text).toBe(REVIEW.manager[0].text);
    expect(findByTestId(Text, 'why-p-m1').text).toBe(`Why: ${REVIEW.manager[0].why}`);
    expect(findByTestId(Link, 'review-link').props.href).toEqual({
      url: REVIEW.review_url,
      external: true,
    });
    if (props.compact) {
      // the sidebar: two questions, no summary line
      expect(maybeFindByTestId(Text, 'question-p-m2')).not.toBeNull();
      expect(maybeFindByTestId(Text, 'question-p-m3')).toBeNull();
      expect(maybeFindByTestId(Text, 'summary')).toBeNull();
    } else {
      expect(findByTestId(Text, 'summary').text).toBe(REVIEW.summary);
      expect(maybeFindByTestId(Text, 'question-p-m3')).not.toBeNull();
      expect(maybeFindByTestId(Text, 'question-p-m4')).toBeNull();
    }
  });

  it.each([
    ['healthy', 'Healthy', 'success'],
    ['critical', 'Critical', 'error'],
  ])('shows a %s review', async (bandName, label, variant) => {
    mockFetch.mockResolvedValue(answer(200, withReview({ health: { score: 50, band: bandName } })));
    const { findByTestId, maybeFindByTestId, waitFor } = setup(location, props);
    await waitFor(() => expect(maybeFindByTestId(Tag, 'band')).not.toBeNull());

    expect(findByTestId(Tag, 'band').text).toBe(label);
    expect(findByTestId(Tag, 'band').props.variant).toBe(variant);
  });

  it('says when there is no review yet', async () => {
    mockFetch.mockResolvedValue(
      answer(404, { type: 'https://dealcoach.dev/problems/no-review', title: 'No review yet' }),
    );
    const { findByTestId, maybeFindByTestId, waitFor, maybeFind } = setup(location, props);
    await waitFor(() => expect(maybeFindByTestId(EmptyState, 'no-review')).not.toBeNull());

    expect(findByTestId(EmptyState, 'no-review').props.title).toBe('No review yet');
    expect(maybeFind(Tag)).toBeNull();
  });

  it('falls back to the summary properties when the service is unreachable', async () => {
    mockFetch.mockRejectedValue(new Error('timeout'));
    const renderer = createRenderer(location);
    renderer.mocks.actions.fetchCrmObjectProperties.willCall(async () => ({
      dealcoach_health: '35',
      dealcoach_band: 'critical',
      dealcoach_summary: 'No activity for 30 days.',
      dealcoach_prompts: 'Who signs?\n\nWhat is the next meeting?\nWhat if they do nothing?',
    }));
    renderer.render(<DealCoachCard {...props} />);
    const { findByTestId, maybeFindByTestId, waitFor } = renderer;
    await waitFor(() => expect(maybeFindByTestId(Alert, 'unreachable')).not.toBeNull());

    expect(renderer.mocks.actions.fetchCrmObjectProperties.calls[0][0]).toEqual([
      'dealcoach_health',
      'dealcoach_band',
      'dealcoach_summary',
      'dealcoach_prompts',
    ]);
    expect(findByTestId(Alert, 'unreachable').text).toBe(
      'dealcoach cannot be reached. Showing the last saved summary.',
    );
    expect(findByTestId(Tag, 'fallback-band').text).toBe('Critical');
    expect(findByTestId(Text, 'fallback-score').text).toBe('35/100');
    expect(findByTestId(Text, 'fallback-summary').text).toBe('No activity for 30 days.');
    expect(findByTestId(Text, 'saved-prompt-0').text).toBe('Who signs?');
    expect(findByTestId(Text, 'saved-prompt-1').text).toBe('What is the next meeting?');
    expect(maybeFindByTestId(Tag, 'band')).toBeNull();
  });

  it('says so when the service fails and nothing was saved on the deal', async () => {
    mockFetch.mockResolvedValue(answer(503, {}));
    const renderer = createRenderer(location);
    renderer.mocks.actions.fetchCrmObjectProperties.willCall(async () => ({}));
    renderer.render(<DealCoachCard {...props} />);
    const { findByTestId, maybeFindByTestId, waitFor } = renderer;
    await waitFor(() => expect(maybeFindByTestId(Alert, 'unreachable')).not.toBeNull());

    expect(findByTestId(Alert, 'unreachable').text).toContain('dealcoach answered HTTP 503.');
    expect(maybeFindByTestId(Text, 'no-saved-summary')).not.toBeNull();
  });

  it('tries the service again from the fallback', async () => {
    mockFetch.mockRejectedValueOnce(new Error('down')).mockResolvedValueOnce(answer(200, REVIEW));
    const renderer = createRenderer(location);
    renderer.mocks.actions.fetchCrmObjectProperties.willCall(async () => ({}));
    renderer.render(<DealCoachCard {...props} />);
    const { findByTestId, maybeFindByTestId, waitFor } = renderer;
    await waitFor(() => expect(maybeFindByTestId(Button, 'retry')).not.toBeNull());

    findByTestId(Button, 'retry').trigger('onClick');
    await waitFor(() => expect(maybeFindByTestId(Tag, 'band')).not.toBeNull());
    expect(mockFetch).toHaveBeenCalledTimes(2);
  });

  it('sends feedback on a question and thanks the user', async () => {
    mockFetch.mockImplementation(async (url) =>
      url.endsWith('/feedback')
        ? answer(201, { prompt_id: 'p-m1', verdict: 'noise', recorded_at: '2026-12-03T10:05:00Z' })
        : answer(200, REVIEW),
    );
    const { findByTestId, maybeFindByTestId, waitFor } = setup(location, props);
    await waitFor(() => expect(maybeFindByTestId(Button, 'noise-p-m1')).not.toBeNull());

    findByTestId(Button, 'noise-p-m1').trigger('onClick');
    await waitFor(() => expect(maybeFindByTestId(Text, 'verdict-p-m1')).not.toBeNull());

    expect(mockFetch).toHaveBeenLastCalledWith(`${BASE}/feedback`, {
      method: 'POST',
      timeout: 10000,
      body: { prompt_id: 'p-m1', verdict: 'noise' },
    });
    expect(findByTestId(Text, 'verdict-p-m1').text).toBe('Marked as noise. Thank you.');
    expect(maybeFindByTestId(Button, 'useful-p-m1')).toBeNull();
  });

  it('shows the verdict the user gave earlier', async () => {
    mockFetch.mockResolvedValue(answer(200, REVIEW));
    const { findByTestId, maybeFindByTestId, waitFor } = setup(location, props);
    await waitFor(() => expect(maybeFindByTestId(Text, 'verdict-p-m2')).not.toBeNull());

    expect(findByTestId(Text, 'verdict-p-m2').text).toBe('Marked useful. Thank you.');
    expect(maybeFindByTestId(Button, 'useful-p-m2')).toBeNull();
  });

  it('keeps the buttons and shows the error when feedback is refused', async () => {
    mockFetch.mockImplementation(async (url) =>
      url.endsWith('/feedback') ? answer(422, { title: 'Unprocessable' }) : answer(200, REVIEW),
    );
    const { findByTestId, maybeFindByTestId, waitFor } = setup(location, props);
    await waitFor(() => expect(maybeFindByTestId(Button, 'useful-p-m1')).not.toBeNull());

    findByTestId(Button, 'useful-p-m1').trigger('onClick');
    await waitFor(() => expect(maybeFindByTestId(Alert, 'feedback-error')).not.toBeNull());

    expect(findByTestId(Alert, 'feedback-error').text).toContain('Reload the card.');
    expect(maybeFindByTestId(Button, 'useful-p-m1')).not.toBeNull();
  });

  it('switches to the rep view and back', async () => {
    mockFetch.mockResolvedValue(answer(200, REVIEW));
    const { findByTestId, maybeFindByTestId, waitFor } = setup(location, props);
    await waitFor(() => expect(maybeFindByTestId(Button, 'view-rep')).not.toBeNull());

    findByTestId(Button, 'view-rep').trigger('onClick');
    await waitFor(() =>
      expect(findByTestId(Heading, 'view-heading').text).toBe('Questions to ask yourself'),
    );
    expect(findByTestId(Button, 'view-rep').props.variant).toBe('primary');
    expect(findByTestId(Button, 'view-manager').props.variant).toBe('secondary');
    expect(findByTestId(Text, 'question-p-r1').text).toBe(REVIEW.rep[0].text);
    expect(maybeFindByTestId(Text, 'question-p-m1')).toBeNull();

    findByTestId(Button, 'view-manager').trigger('onClick');
    await waitFor(() => expect(maybeFindByTestId(Text, 'question-p-m1')).not.toBeNull());
  });

  it('says when a view has no questions', async () => {
    mockFetch.mockResolvedValue(answer(200, withReview({ rep: [] })));
    const { findByTestId, maybeFindByTestId, waitFor } = setup(location, props);
    await waitFor(() => expect(maybeFindByTestId(Button, 'view-rep')).not.toBeNull());

    findByTestId(Button, 'view-rep').trigger('onClick');
    await waitFor(() => expect(maybeFindByTestId(Text, 'no-prompts')).not.toBeNull());
  });

  it('does not link a review URL that is not a web address', async () => {
    mockFetch.mockResolvedValue(
      answer(200, withReview({ review_url: ['javascript', 'alert(1)'].join(':') })),
    );
    const { maybeFindByTestId, waitFor } = setup(location, props);
    await waitFor(() => expect(maybeFindByTestId(Tag, 'band')).not.toBeNull());

    expect(maybeFindByTestId(Link, 'review-link')).toBeNull();
  });
});
