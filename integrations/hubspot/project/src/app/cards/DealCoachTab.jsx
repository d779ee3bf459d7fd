import { hubspot } from '@hubspot/ui-extensions';
import React from 'react';

import { DealCoachCard } from './DealCoachCard.jsx';

// The deal record's "Deal Coach" tab (crm.record.tab): the full card.
hubspot.extend(() => <DealCoachCard maxPrompts={5} />);
