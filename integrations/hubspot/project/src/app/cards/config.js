/**
 * The dealcoach service the cards call with hubspot.fetch: your DEALCOACH_PUBLIC_URL
 * (https, no trailing slash). https://dealcoach.example.com is a placeholder: replace it here
 * AND in ../app-hsmeta.json (permittedUrls.fetch, redirectUrls) and
 * ../webhooks/webhooks-hsmeta.json (targetUrl) before `hs project upload`
 * (docs/hubspot.md, "Installing the card"). A test checks the three agree.
 */
export const SERVICE_URL = 'https://dealcoach.example.com';

/** The deal properties dealcoach's summary write-back fills (the card's fallback). */
export const SUMMARY_PROPERTIES = [
  'dealcoach_health',
  'dealcoach_band',
  'dealcoach_summary',
  'dealcoach_prompts',
];

/** hubspot.fetch allows 15 s at most; the card gives up sooner and shows the fallback. */
export const FETCH_TIMEOUT_MS = 10000;
