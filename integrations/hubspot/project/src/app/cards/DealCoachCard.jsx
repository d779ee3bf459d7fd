import {
  Alert,
  Button,
  ButtonRow,
  Divider,
  EmptyState,
  Flex,
  Heading,
  Link,
  LoadingSpinner,
  Tag,
  Text,
  useExtensionActions,
  useExtensionContext,
} from '@hubspot/ui-extensions';
import React, { useCallback, useEffect, useRef, useState } from 'react';

import { fetchReview, sendFeedback } from './api.js';
import { SUMMARY_PROPERTIES } from './config.js';

const BANDS = {
  healthy: { label: 'Healthy', variant: 'success' },
  at_risk: { label: 'At risk', variant: 'warning' },
  critical: { label: 'Critical', variant: 'error' },
};

const VERDICT_LABELS = { useful: 'Marked useful', noise: 'Marked as noise' };

function bandOf(band) {
  return BANDS[band] || { label: band || 'Unknown', variant: 'default' };
}

/** Only web links are offered (the review URL comes from the service, still checked). */
function safeUrl(url) {
  return typeof url === 'string' && /^https?:\/\//i.test(url) ? url : null;
}

function initialVerdicts(review) {
  const verdicts = {};
  [...(review.manager || []), ...(review.rep || [])].forEach((prompt) => {
    if (prompt.feedback) {
      verdicts[prompt.id] = prompt.feedback;
    }
  });
  return verdicts;
}

function Prompt({ prompt, verdict, onFeedback }) {
  return (
    <Flex direction="column" gap="xs" testId={`prompt-${prompt.id}`}>
      <Text format={{ fontWeight: 'bold' }} testId={`question-${prompt.id}`}>
        {prompt.text}
      </Text>
      <Text variant="microcopy" testId={`why-${prompt.id}`}>
        Why: {prompt.why}
      </Text>
      {verdict ? (
        <Text variant="microcopy" testId={`verdict-${prompt.id}`}>
          {VERDICT_LABELS[verdict]}. Thank you.
        </Text>
      ) : (
        <ButtonRow>
          <Button
            size="xs"
            variant="secondary"
            testId={`useful-${prompt.id}`}
            onClick={() => onFeedback(prompt.id, 'useful')}
          >
            Useful
          </Button>
          <Button
            size="xs"
            variant="secondary"
            testId={`noise-${prompt.id}`}
            onClick={() => onFeedback(prompt.id, 'noise')}
          >
            Noise
          </Button>
        </ButtonRow>
      )}
    </Flex>
  );
}

function Fallback({ reason, saved, onRetry, maxPrompts }) {
  const prompts = (saved.dealcoach_prompts || '')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line)
    .slice(0, maxPrompts);
  const hasData = Boolean(saved.dealcoach_band || saved.dealcoach_summary || prompts.length);
  const band = saved.dealcoach_band ? bandOf(saved.dealcoach_band) : null;
  return (
    <Flex direction="column" gap="sm">
      <Alert title="Live coaching is unavailable" variant="warning" testId="unreachable">
        {reason} Showing the last saved summary.
      </Alert>
      {hasData ? (
        <>
          <Flex direction="row" gap="sm" align="center">
            {band && (
              <Tag variant={band.variant} testId="fallback-band">
                {band.label}
              </Tag>
            )}
            {saved.dealcoach_health ? (
              <Text format={{ fontWeight: 'bold' }} testId="fallback-score">
                {saved.dealcoach_health}/100
              </Text>
            ) : null}
          </Flex>
          {saved.dealcoach_summary ? (
            <Text testId="fallback-summary">{saved.dealcoach_summary}</Text>
          ) : null}
          {prompts.map((line, index) => (
            <Text key={`saved-${index}`} testId={`saved-prompt-${index}`}>
              {line}
            </Text>
          ))}
        </>
      ) : (
        <Text testId="no-saved-summary">No saved summary on this deal yet.</Text>
      )}
      <Button variant="secondary" size="xs" testId="retry" onClick={onRetry}>
        Try again
      </Button>
    </Flex>
  );
}

/**
 * dealcoach on a HubSpot deal record: the live review from the service (hubspot.fetch), or,
 * when the service cannot be reached, the summary properties it last wrote on the deal.
 *
 * States: loading, review (healthy / at risk / critical), no review yet, service
 * unreachable (fallback), feedback sent, manager or rep view. `compact` (the sidebar) shows
 * fewer questions and no summary line.
 */
export function DealCoachCard({ compact = false, maxPrompts = compact ? 2 : 3 }) {
  const context = useExtensionContext();
  const actions = useExtensionActions();
  const actionsRef = useRef(actions);
  actionsRef.current = actions;
  const dealId = context.crm.objectId;

  const [state, setState] = useState({ status: 'loading' });
  const [view, setView] = useState('manager');
  const [verdicts, setVerdicts] = useState({});
  const [feedbackError, setFeedbackError] = useState('');

  const load = useCallback(async () => {
    setState({ status: 'loading' });
    try {
      const review = await fetchReview(dealId);
      if (review === null) {
        setState({ status: 'no-review' });
        return;
      }
      setVerdicts(initialVerdicts(review));
      setState({ status: 'review', review });
    } catch (error) {
      let saved = {};
      try {
        saved = (await actionsRef.current.fetchCrmObjectProperties(SUMMARY_PROPERTIES)) || {};
      } catch {
        saved = {};
      }
      setState({ status: 'unreachable', reason: error.message, saved });
    }
  }, [dealId]);

  useEffect(() => {
    load();
  }, [load]);

  const onFeedback = useCallback(
    async (promptId, verdict) => {
      setFeedbackError('');
      try {
        await sendFeedback(dealId, promptId, verdict);
        setVerdicts((current) => ({ ...current, [promptId]: verdict }));
      } catch (error) {
        setFeedbackError(error.message);
      }
    },
    [dealId],
  );

  if (state.status === 'loading') {
    return <LoadingSpinner label="Loading dealcoach's review" testId="loading" />;
  }
  if (state.status === 'no-review') {
    return (
      <EmptyState title="No review yet" layout="vertical" testId="no-review">
        <Text>dealcoach has not reviewed this deal yet.</Text>
        <Text variant="microcopy">
          A review runs at the next sync, or right after the deal stage changes.
        </Text>
      </EmptyState>
    );
  }
  if (state.status === 'unreachable') {
    return (
      <Fallback reason={state.reason} saved={state.saved} onRetry={load} maxPrompts={maxPrompts} />
    );
  }

  const { review } = state;
  const band = bandOf(review.health && review.health.band);
  const prompts = (review[view] || []).slice(0, maxPrompts);
  const reviewUrl = safeUrl(review.review_url);
  return (
    <Flex direction="column" gap="sm">
      <Flex direction="row" gap="sm" align="center">
        <Tag variant={band.variant} testId="band">
          {band.label}
        </Tag>
        <Text format={{ fontWeight: 'bold' }} testId="score">
          {review.health ? review.health.score : '?'}/100
        </Text>
      </Flex>
      {compact ? null : <Text testId="summary">{review.summary}</Text>}
      <ButtonRow>
        <Button
          size="xs"
          variant={view === 'manager' ? 'primary' : 'secondary'}
          testId="view-manager"
          onClick={() => setView('manager')}
        >
          Manager
        </Button>
        <Button
          size="xs"
          variant={view === 'rep' ? 'primary' : 'secondary'}
          testId="view-rep"
          onClick={() => setView('rep')}
        >
          Rep
        </Button>
      </ButtonRow>
      <Heading testId="view-heading">
        {view === 'rep' ? 'Questions to ask yourself' : 'Questions to ask the rep'}
      </Heading>
      {prompts.length ? (
        prompts.map((prompt, index) => (
          <React.Fragment key={prompt.id}>
            {index > 0 && <Divider />}
            <Prompt prompt={prompt} verdict={verdicts[prompt.id]} onFeedback={onFeedback} />
          </React.Fragment>
        ))
      ) : (
        <Text testId="no-prompts">No questions for this view: nothing stands out.</Text>
      )}
      {feedbackError ? (
        <Alert title="Feedback not saved" variant="error" testId="feedback-error">
          {feedbackError}
        </Alert>
      ) : null}
      {reviewUrl ? (
        <Link href={{ url: reviewUrl, external: true }} testId="review-link">
          Open the full review
        </Link>
      ) : null}
    </Flex>
  );
}
