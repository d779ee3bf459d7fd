import { createElement } from '@lwc/engine-dom';
import DealCoach from 'c/dealCoach';
import { getRecord } from 'lightning/uiRecordApi';
import getReview from '@salesforce/apex/DealCoachController.getReview';
import sendFeedback from '@salesforce/apex/DealCoachController.sendFeedback';

jest.mock('@salesforce/apex/DealCoachController.getReview', () => ({ default: jest.fn() }), {
    virtual: true
});
jest.mock('@salesforce/apex/DealCoachController.sendFeedback', () => ({ default: jest.fn() }), {
    virtual: true
});

const REVIEW = require('./data/review.json');
const SUMMARY_RECORD = require('./data/summaryRecord.json');
const RECORD_ID = '006000000000001AAA';

function reviewWith(changes) {
    return JSON.stringify({ ...REVIEW, ...changes });
}

// Several rounds: the Apex promise, then the re-render.
async function settle() {
    for (let i = 0; i < 5; i += 1) {
        // eslint-disable-next-line no-await-in-loop
        await Promise.resolve();
    }
}

function mount(props = {}) {
    const element = createElement('c-deal-coach', { is: DealCoach });
    element.recordId = RECORD_ID;
    Object.assign(element, props);
    document.body.appendChild(element);
    return element;
}

const $ = (element, selector) => element.shadowRoot.querySelector(selector);
const $$ = (element, selector) => Array.from(element.shadowRoot.querySelectorAll(selector));
const text = (element, selector) => $(element, selector).textContent.replace(/\s+/g, ' ').trim();

describe('c-deal-coach', () => {
    afterEach(() => {
        while (document.body.firstChild) {
            document.body.removeChild(document.body.firstChild);
        }
        jest.clearAllMocks();
    });

    it('shows a spinner while the review loads', async () => {
        getReview.mockReturnValue(new Promise(() => {}));
        const element = mount();
        await settle();

        expect($(element, 'lightning-spinner')).not.toBeNull();
        expect($(element, '.review')).toBeNull();
        expect($(element, '.fallback')).toBeNull();
        expect(getReview).toHaveBeenCalledWith({ opportunityId: RECORD_ID });
    });

    it('shows an at-risk review: band, score, summary, the top questions with their why, the link', async () => {
        getReview.mockResolvedValue(JSON.stringify(REVIEW));
        const element = mount();
        await settle();

        expect($(element, 'lightning-spinner')).toBeNull();
        expect(text(element, '[data-id="band"]')).toBe('At risk');
        expect($(element, '[data-id="band"]').className).toContain('slds-theme_warning');
        expect(text(element, '[data-id="score"]')).toBe('62/100');
        expect(text(element, '[data-id="summary"]')).toBe(REVIEW.summary);
        expect($(element, '[data-id="reviewed-at"]').value).toBe('2026-12-03T10:00:00Z');
        expect(text(element, '[data-id="view-heading"]')).toBe('Questions to ask the rep');

        const prompts = $$(element, 'li.prompt');
        expect(prompts.map((li) => li.dataset.prompt)).toEqual(['p-m1', 'p-m2', 'p-m3']);
        expect(prompts[0].querySelector('.question').textContent).toBe(REVIEW.manager[0].text);
        expect(prompts[0].querySelector('.why').textContent).toBe(`Why: ${REVIEW.manager[0].why}`);

        const link = $(element, 'a[data-id="review-link"]');
        expect(link.href).toBe(REVIEW.review_url);
        expect(link.rel).toBe('noopener noreferrer');
    });

    it('shows a healthy review in green', async () => {
        getReview.mockResolvedValue(reviewWith({ health: { score: 91, band: 'healthy' } }));
        const element = mount();
        await settle();

        expect(text(element, '[data-id="band"]')).toBe('Healthy');
        expect($(element, '[data-id="band"]').className).toContain('slds-theme_success');
        expect(text(element, '[data-id="score"]')).toBe('91/100');
    });

    it('shows a critical review in red', async () => {
        getReview.mockResolvedValue(reviewWith({ health: { score: 18, band: 'critical' } }));
        const element = mount();
        await settle();

        expect(text(element, '[data-id="band"]')).toBe('Critical');
        expect($(element, '[data-id="band"]').className).toContain('slds-theme_error');
    });

    it('lists as many questions as the page builder asked for', async () => {
        getReview.mockResolvedValue(JSON.stringify(REVIEW));
        const element = mount({ maxPrompts: 4 });
        await settle();

        expect($$(element, 'li.prompt')).toHaveLength(4);
    });

    it('says when there is no review yet', async () => {
        getReview.mockResolvedValue(null);
        const element = mount();
        await settle();

        expect(text(element, '.no-review')).toContain('dealcoach has not reviewed this opportunity yet.');
        expect($(element, '.review')).toBeNull();
        expect($(element, '.fallback')).toBeNull();
    });

    it('falls back to the summary fields when the service is unreachable', async () => {
        getReview.mockRejectedValue({ body: { message: 'dealcoach cannot be reached.' } });
        const element = mount();
        getRecord.emit(SUMMARY_RECORD);
        await settle();

        expect(getRecord.getLastConfig()).toEqual({
            recordId: RECORD_ID,
            optionalFields: [
                'Dealcoach_Health__c',
                'Dealcoach_Band__c',
                'Dealcoach_Summary__c',
                'Dealcoach_Prompts__c'
            ].map((fieldApiName) => ({ objectApiName: 'Opportunity', fieldApiName }))
        });
        expect(text(element, '[data-id="unreachable"]')).toBe(
            'Live coaching is unavailable: dealcoach cannot be reached. Showing the last saved summary.'
        );
        expect(text(element, '[data-id="fallback-band"]')).toBe('Critical');
        expect($(element, '[data-id="fallback-band"]').className).toContain('slds-theme_error');
        expect(text(element, '[data-id="fallback-score"]')).toBe('35/100');
        expect(text(element, '[data-id="fallback-summary"]')).toBe(
            'No activity for 30 days and the close date passed.'
        );
        expect($$(element, 'li.saved-prompt').map((li) => li.textContent)).toEqual([
            'What did the buyer say when the date slipped?',
            'Who signs?',
            'What is the next meeting?'
        ]);
        expect($(element, '.review')).toBeNull();
    });

    it('says so when the service is unreachable and nothing was saved on the record', async () => {
        getReview.mockRejectedValue(new Error('network'));
        const element = mount();
        getRecord.emit({ apiName: 'Opportunity', id: RECORD_ID, fields: {} });
        await settle();

        expect(text(element, '[data-id="unreachable"]')).toContain('dealcoach cannot be reached.');
        expect($(element, '.no-saved-summary')).not.toBeNull();
        expect($(element, '[data-id="fallback-band"]')).toBeNull();
    });

    it('tries the service again from the fallback', async () => {
        getReview.mockRejectedValueOnce({ body: { message: 'dealcoach answered HTTP 503.' } });
        getReview.mockResolvedValueOnce(JSON.stringify(REVIEW));
        const element = mount();
        await settle();
        expect($(element, '.fallback')).not.toBeNull();

        $(element, 'lightning-button[data-id="retry"]').click();
        await settle();

        expect(getReview).toHaveBeenCalledTimes(2);
        expect($(element, '.fallback')).toBeNull();
        expect(text(element, '[data-id="band"]')).toBe('At risk');
    });

    it('sends feedback on a question and thanks the user', async () => {
        getReview.mockResolvedValue(JSON.stringify(REVIEW));
        sendFeedback.mockResolvedValue(
            JSON.stringify({ prompt_id: 'p-m1', verdict: 'noise', recorded_at: '2026-12-03T10:05:00Z' })
        );
        const element = mount();
        await settle();

        $(element, 'lightning-button[data-prompt="p-m1"][data-verdict="noise"]').click();
        await settle();

        expect(sendFeedback).toHaveBeenCalledWith({
            opportunityId: RECORD_ID,
            promptId: 'p-m1',
            verdict: 'noise'
        });
        const first = $(element, 'li.prompt[data-prompt="p-m1"]');
        expect(first.querySelector('.verdict').textContent).toBe('Marked as noise. Thank you.');
        expect(first.querySelector('lightning-button')).toBeNull();
        // the others still ask
        expect($(element, 'lightning-button[data-prompt="p-m3"][data-verdict="useful"]')).not.toBeNull();
    });

    it('shows the verdict the user gave earlier', async () => {
        getReview.mockResolvedValue(JSON.stringify(REVIEW));
        const element = mount();
        await settle();

        const second = $(element, 'li.prompt[data-prompt="p-m2"]');
        expect(second.querySelector('.verdict').textContent).toBe('Marked useful. Thank you.');
        expect(second.querySelector('lightning-button')).toBeNull();
    });

    it('keeps the buttons and shows the error when feedback fails', async () => {
        getReview.mockResolvedValue(JSON.stringify(REVIEW));
        sendFeedback.mockRejectedValue({
            body: { message: 'dealcoach did not accept this feedback: the review has changed. Reload the card.' }
        });
        const element = mount();
        await settle();

        $(element, 'lightning-button[data-prompt="p-m1"][data-verdict="useful"]').click();
        await settle();

        expect(text(element, '.feedback-error')).toContain('Reload the card.');
        expect($(element, 'lightning-button[data-prompt="p-m1"][data-verdict="useful"]')).not.toBeNull();
    });

    it('switches to the rep view', async () => {
        getReview.mockResolvedValue(JSON.stringify(REVIEW));
        const element = mount();
        await settle();

        $(element, 'lightning-button[data-view="rep"]').click();
        await settle();

        expect(text(element, '[data-id="view-heading"]')).toBe('Questions to ask yourself');
        expect($(element, 'lightning-button[data-view="rep"]').variant).toBe('brand');
        expect($(element, 'lightning-button[data-view="manager"]').variant).toBe('neutral');
        const prompts = $$(element, 'li.prompt');
        expect(prompts.map((li) => li.dataset.prompt)).toEqual(['p-r1']);
        expect(prompts[0].querySelector('.question').textContent).toBe(REVIEW.rep[0].text);

        $(element, 'lightning-button[data-view="manager"]').click();
        await settle();
        expect($$(element, 'li.prompt')).toHaveLength(3);
    });

    it('says when a view has no questions', async () => {
        getReview.mockResolvedValue(reviewWith({ rep: [] }));
        const element = mount();
        await settle();

        $(element, 'lightning-button[data-view="rep"]').click();
        await settle();

        expect($(element, '.no-prompts')).not.toBeNull();
    });

    it('does not link a review URL that is not a web address', async () => {
        getReview.mockResolvedValue(reviewWith({ review_url: ['javascript', 'alert(1)'].join(':') }));
        const element = mount();
        await settle();

        expect($(element, 'a[data-id="review-link"]')).toBeNull();
    });
});
