// sfdx-lwc-jest's configuration: it compiles the components, stubs the lightning-* base
// components and lightning/* modules (uiRecordApi's getRecord is a test wire adapter),
// and turns @salesforce/apex/... and @salesforce/schema/... imports into stubs the tests mock.
const { jestConfig } = require('@salesforce/sfdx-lwc-jest/config');

module.exports = {
    ...jestConfig,
    testPathIgnorePatterns: [...jestConfig.testPathIgnorePatterns, '<rootDir>/emulator/']
};
