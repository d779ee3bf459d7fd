"""The in-CRM cards: the Salesforce LWC and the HubSpot app card read reviews here."""
