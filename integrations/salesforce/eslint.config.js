'use strict';

// ESLint for the Lightning Web Components: Salesforce's recommended LWC rules.
const { defineConfig } = require('eslint/config');
const salesforceLwcConfig = require('@salesforce/eslint-config-lwc/recommended');
const globals = require('globals');

module.exports = defineConfig([
    { ignores: ['node_modules/**', 'emulator/**'] },
    {
        files: ['force-app/main/default/lwc/**/*.js'],
        extends: [salesforceLwcConfig]
    },
    {
        files: ['force-app/main/default/lwc/**/__tests__/**/*.js'],
        extends: [salesforceLwcConfig],
        rules: {
            '@lwc/lwc/no-unexpected-wire-adapter-usages': 'off'
        },
        languageOptions: {
            globals: { ...globals.node, ...globals.jest }
        }
    },
    {
        files: ['*.config.js'],
        languageOptions: { sourceType: 'commonjs', globals: { ...globals.node } }
    }
]);
