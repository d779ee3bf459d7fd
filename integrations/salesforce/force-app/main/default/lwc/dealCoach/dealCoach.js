import { LightningElement, api, wire } from 'lwc';
import { getRecord, getFieldValue } from 'lightning/uiRecordApi';
import getReview from '@salesforce/apex/DealCoachController.getReview';
import sendFeedback from '@salesforce/apex/DealCoachController.sendFeedback';
import HEALTH_FIELD from '@salesforce/schema/Opportunity.Dealcoach_Health__c';
import BAND_FIELD from '@salesforce/schema/Opportunity.Dealcoach_Band__c';
import SUMMARY_FIELD from '@salesforce/schema/Opportunity.Dealcoach_Summary__c';
import PROMPTS_FIELD from '@salesforce/schema/Opportunity.Dealcoach_Prompts__c';

const SUMMARY_FIELDS = [HEALTH_FIELD, BAND_FIELD, SUMMARY_FIELD, PROMPTS_FIELD];

const BANDS = {
    healthy: { label: 'Healthy', theme: 'slds-badge slds-theme_success' },
    at_risk: { label: 'At risk', theme: 'slds-badge slds-theme_warning' },
    critical: { label: 'Critical', theme: 'slds-badge slds-theme_error' }
};

const VERDICT_LABELS = { useful: 'Marked useful', noise: 'Marked as noise' };

/** The message of an Apex or wire error, for the card's notice. */
function errorMessage(error) {
    if (error && error.body && typeof error.body.message === 'string') {
        return error.body.message;
    }
    return 'dealcoach cannot be reached.';
}

/** Only web links are used as href (a review URL comes from the service, still checked). */
function safeUrl(url) {
    return typeof url === 'string' && /^https?:\/\//i.test(url) ? url : null;
}

/**
 * dealcoach on the Opportunity record page. Reads the live review through Apex
 * (DealCoachController -> Named Credential Dealcoach); when the service cannot be reached,
 * shows the summary fields the service last wrote on the record.
 *
 * States: loading, review (healthy / at risk / critical), no review yet, service
 * unreachable (fallback to the summary fields), feedback sent, manager or rep view.
 */
export default class DealCoach extends LightningElement {
    @api recordId;
    @api maxPrompts = 3;

    loading = true;
    review = null;
    noReview = false;
    unreachable = false;
    unreachableReason = '';
    view = 'manager';
    feedback = {};
    feedbackError = '';
    record;

    @wire(getRecord, { recordId: '$recordId', optionalFields: SUMMARY_FIELDS })
    wiredRecord({ data }) {
        // An error here only means no fallback: the live review does not depend on it.
        this.record = data;
    }

    connectedCallback() {
        this.load();
    }

    async load() {
        this.loading = true;
        this.unreachable = false;
        this.noReview = false;
        try {
            const body = await getReview({ opportunityId: this.recordId });
            if (body) {
                this.review = JSON.parse(body);
                this.feedback = this.initialFeedback(this.review);
            } else {
                this.review = null;
                this.noReview = true;
            }
        } catch (error) {
            this.review = null;
            this.unreachable = true;
            this.unreachableReason = errorMessage(error);
        } finally {
            this.loading = false;
        }
    }

    initialFeedback(review) {
        const verdicts = {};
        [...(review.manager || []), ...(review.rep || [])].forEach((prompt) => {
            if (prompt.feedback) {
                verdicts[prompt.id] = prompt.feedback;
            }
        });
        return verdicts;
    }

    // ---- what the template shows

    get hasReview() {
        return !this.loading && this.review !== null;
    }

    get showNoReview() {
        return !this.loading && this.noReview;
    }

    get showFallback() {
        return !this.loading && this.unreachable;
    }

    get band() {
        const health = (this.review && this.review.health) || {};
        return BANDS[health.band] || { label: health.band || 'Unknown', theme: 'slds-badge' };
    }

    get bandLabel() {
        return this.band.label;
    }

    get bandClass() {
        return this.band.theme;
    }

    get score() {
        return this.review && this.review.health ? this.review.health.score : null;
    }

    get isRepView() {
        return this.view === 'rep';
    }

    get managerVariant() {
        return this.isRepView ? 'neutral' : 'brand';
    }

    get repVariant() {
        return this.isRepView ? 'brand' : 'neutral';
    }

    get viewHeading() {
        return this.isRepView ? 'Questions to ask yourself' : 'Questions to ask the rep';
    }

    get prompts() {
        const list = (this.review && this.review[this.view]) || [];
        return list.slice(0, this.maxPrompts).map((prompt) => {
            const verdict = this.feedback[prompt.id];
            return {
                id: prompt.id,
                text: prompt.text,
                why: prompt.why,
                severity: prompt.severity,
                verdict,
                sent: Boolean(verdict),
                verdictLabel: verdict ? VERDICT_LABELS[verdict] : ''
            };
        });
    }

    get hasPrompts() {
        return this.prompts.length > 0;
    }

    get reviewUrl() {
        return safeUrl(this.review && this.review.review_url);
    }

    // ---- fallback: the summary fields on the record

    get fallbackBand() {
        const band = this.record ? getFieldValue(this.record, BAND_FIELD) : null;
        return band ? (BANDS[band] || { label: band, theme: 'slds-badge' }) : null;
    }

    get fallbackBandLabel() {
        return this.fallbackBand ? this.fallbackBand.label : '';
    }

    get fallbackBandClass() {
        return this.fallbackBand ? this.fallbackBand.theme : 'slds-badge';
    }

    get fallbackScore() {
        return this.record ? getFieldValue(this.record, HEALTH_FIELD) : null;
    }

    get hasFallbackScore() {
        return this.fallbackScore !== null && this.fallbackScore !== undefined;
    }

    get fallbackSummary() {
        return this.record ? getFieldValue(this.record, SUMMARY_FIELD) : null;
    }

    get fallbackPrompts() {
        const text = this.record ? getFieldValue(this.record, PROMPTS_FIELD) : null;
        if (!text) {
            return [];
        }
        return text
            .split('\n')
            .map((line) => line.trim())
            .filter((line) => line)
            .slice(0, this.maxPrompts)
            .map((line, index) => ({ key: `saved-${index}`, text: line }));
    }

    get hasFallbackData() {
        return Boolean(this.fallbackBand || this.fallbackSummary || this.fallbackPrompts.length);
    }

    // ---- actions

    handleView(event) {
        this.view = event.target.dataset.view === 'rep' ? 'rep' : 'manager';
    }

    handleRetry() {
        this.load();
    }

    async handleFeedback(event) {
        const promptId = event.target.dataset.prompt;
        const verdict = event.target.dataset.verdict;
        this.feedbackError = '';
        try {
            await sendFeedback({ opportunityId: this.recordId, promptId, verdict });
            this.feedback = { ...this.feedback, [promptId]: verdict };
        } catch (error) {
            this.feedbackError = errorMessage(error);
        }
    }
}
