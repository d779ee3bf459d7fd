import { hubspot } from '@hubspot/ui-extensions';
import React from 'react';

import { DealCoachCard } from './DealCoachCard.jsx';

// The deal record's right sidebar card (crm.record.sidebar): the compact card.
hubspot.extend(() => <DealCoachCard compact />);
