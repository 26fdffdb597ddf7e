import { builtinConnectors } from '../connectors/index.ts';
import { type Page, StepRegistry } from '../engine/sdk.ts';
import { eventEmit } from './event/emit.ts';
import { filter } from './filter.ts';
import { log } from './log.ts';
import { needsAttention } from './run/needs_attention.ts';
import { quotaPause } from './quota/pause.ts';
import { transform } from './transform.ts';
import { emailSend } from './email/send.ts';
import { emailCampaign } from './email/campaign.ts';
import { emailDeliver } from './email/deliver.ts';
import { emailFollowUp } from './email/follow_up.ts';
import { EmailSchema, emailProblems, mailboxKeys } from './email/settings.ts';
import { emailPages } from './email/pages.ts';
import { clickPages } from './email/clicks.ts';
import { emailInbox } from './email/inbox.ts';
import { inboundMailPage } from './email/inbound-page.ts';
import { httpRequest } from './http/request.ts';
import { reportAnalyse } from './report/analyse.ts';
import { intelCollect } from './intel/collect.ts';
import { reportPages } from './report/pages.ts';
import { reportRender } from './report/render.ts';
import { reportFind } from './report/find.ts';
import { sqlExecute } from './sql/execute.ts';
import { sqlInsert } from './sql/insert.ts';
import { sqlQuery } from './sql/query.ts';
import { sqlUpsert } from './sql/upsert.ts';
import { stripeCheckout } from './stripe/checkout.ts';
import { prospectsRead } from './prospects/read.ts';
import { prospectsSave } from './prospects/save.ts';
import { SourcesSchema } from './prospects/sources.ts';
import { CategoriesSchema, prospectsCategorise } from './prospects/categorise.ts';
import { EnrichmentSchema, prospectsCensus } from './prospects/census.ts';
import { LinkedinSchema, linkedinSelect } from './linkedin/select.ts';
import { linkedinPlanInvitations } from './linkedin/plan_invitations.ts';
import { linkedinInvite } from './linkedin/invite.ts';
import { linkedinAcceptances } from './linkedin/acceptances.ts';
import { linkedinMessage } from './linkedin/message.ts';
import { linkedinFollowUps } from './linkedin/follow_ups.ts';
import { linkedinReplies } from './linkedin/replies.ts';
import { phantombusterWebhookPage } from './linkedin/webhook-page.ts';
import { linkedinWithdraw } from './linkedin/withdraw.ts';
import { linkedinHealthRemarks } from './linkedin/health.ts';
import { emailHealthRemarks } from './email/health.ts';
import { reportAnalyseBatch } from './report/analyse_batch.ts';
import { businessMigrations } from './tables.ts';

/** Every built-in step type. A new step type is one file named after it (`family.name` in family/name.ts, `name` in name.ts) plus one line below. */
export const builtinSteps = [
  httpRequest,
  sqlQuery,
  sqlExecute,
  sqlInsert,
  sqlUpsert,
  transform,
  filter,
  log,
  eventEmit,
  needsAttention,
  quotaPause,
  stripeCheckout,
  intelCollect,
  reportAnalyse,
  reportRender,
  emailSend,
  emailCampaign,
  emailDeliver,
  emailInbox,
  prospectsRead,
  prospectsSave,
  prospectsCensus,
  prospectsCategorise,
  linkedinSelect,
  reportAnalyseBatch,
  emailFollowUp,
  reportFind,
  linkedinPlanInvitations,
  linkedinInvite,
  linkedinAcceptances,
  linkedinMessage,
  linkedinFollowUps,
  linkedinReplies,
  linkedinWithdraw,
];

/** Pages the daemon serves besides webhooks. */
export const builtinPages: readonly Page[] = [...reportPages, ...emailPages, ...clickPages, inboundMailPage, phantombusterWebhookPage];

/** The steps, the connectors (and the verifier types they bring) and the config sections steps read. */
export function createRegistry(): StepRegistry {
  return new StepRegistry(builtinSteps)
    .tables(businessMigrations)
    .connector(...builtinConnectors)
    .configSection('prospect_sources', SourcesSchema)
    .configSection('enrichment', EnrichmentSchema)
    .configSection('categories', CategoriesSchema)
    .configSection('linkedin', LinkedinSchema)
    .configSection('email', EmailSchema, emailProblems)
    .quotaKeys('email.mailboxes', mailboxKeys)
    .quotaRemarks(linkedinHealthRemarks)
    .quotaRemarks(emailHealthRemarks);
}
