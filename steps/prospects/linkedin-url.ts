/** LinkedIn URLs: one canonical form, kept with the Phantombuster connector that matches profiles by it. */
export { normalizeLinkedInUrl, normalizeSalesNavigatorUrl } from '../../connectors/phantombuster/profile-url.ts';
