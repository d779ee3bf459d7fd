import { hubspot } from '@hubspot/ui-extensions';

import { FETCH_TIMEOUT_MS, SERVICE_URL } from './config.js';

/** A failed call to dealcoach: `status` is the HTTP status, 0 when it could not be reached. */
export class CardApiError extends Error {
  constructor(message, status) {
    super(message);
    this.name = 'CardApiError';
    this.status = status;
  }
}

function dealUrl(dealId, tail) {
  return `${SERVICE_URL}/cards/v1/hubspot/deals/${encodeURIComponent(String(dealId))}/${tail}`;
}

async function call(url, options) {
  let response;
  try {
    response = await hubspot.fetch(url, { timeout: FETCH_TIMEOUT_MS, ...options });
  } catch {
    throw new CardApiError('dealcoach cannot be reached.', 0);
  }
  return response;
}

/**
 * The deal's latest review (the card API's 200 body), or null when there is none yet (404).
 * HubSpot adds the portal and user to the query and signs the request; the service checks it.
 */
export async function fetchReview(dealId) {
  const response = await call(dealUrl(dealId, 'review'), { method: 'GET' });
  if (response.status === 404) {
    return null;
  }
  if (!response.ok) {
    throw new CardApiError(`dealcoach answered HTTP ${response.status}.`, response.status);
  }
  return response.json();
}

/** Records the user's verdict ("useful" or "noise") on one prompt. */
export async function sendFeedback(dealId, promptId, verdict) {
  const response = await call(dealUrl(dealId, 'feedback'), {
    method: 'POST',
    body: { prompt_id: promptId, verdict },
  });
  if (response.status === 422) {
    throw new CardApiError(
      'dealcoach did not accept this feedback: the review has changed. Reload the card.',
      422,
    );
  }
  if (!response.ok) {
    throw new CardApiError(`dealcoach answered HTTP ${response.status}.`, response.status);
  }
  return response.json();
}
