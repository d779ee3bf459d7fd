import { readFileSync } from 'node:fs';

import { describe, expect, it } from 'vitest';

import { SERVICE_URL } from '../config.js';

const read = (path) => JSON.parse(readFileSync(new URL(path, import.meta.url), 'utf8'));

describe('project configuration', () => {
  const app = read('../../app-hsmeta.json');
  const webhooks = read('../../webhooks/webhooks-hsmeta.json');

  it('permits hubspot.fetch to the service the cards call', () => {
    expect(SERVICE_URL).toMatch(/^https:\/\/[^/]+$/);
    expect(app.config.permittedUrls.fetch).toContain(SERVICE_URL);
  });

  it('sends OAuth and webhooks to the same service', () => {
    expect(app.config.auth.redirectUrls).toEqual([`${SERVICE_URL}/oauth/callback/hubspot`]);
    expect(webhooks.config.settings.targetUrl).toBe(`${SERVICE_URL}/webhooks/hubspot`);
  });

  it('declares two deal cards, a tab and a sidebar, whose entry points exist', () => {
    for (const [file, location] of [
      ['../deal-coach-tab-hsmeta.json', 'crm.record.tab'],
      ['../deal-coach-sidebar-hsmeta.json', 'crm.record.sidebar'],
    ]) {
      const card = read(file);
      expect(card.type).toBe('card');
      expect(card.config.location).toBe(location);
      expect(card.config.objectTypes).toEqual(['deals']);
      const entry = card.config.entrypoint.replace(/^\/app\/cards\//, '../');
      expect(() => readFileSync(new URL(entry, import.meta.url))).not.toThrow();
    }
  });
});
