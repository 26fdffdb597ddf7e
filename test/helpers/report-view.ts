import type { AdwordsKeywordRow, CompetitorRow, OrganicKeywordRow } from '../../connectors/semrush/client.ts';
import type { Analysis, ReportView, SearchIntel } from '../../steps/report/model.ts';

/**
 * A realistic report for Acme Widgets: 20 organic keywords, 6 competitors, 10 paid keywords,
 * SpyFu's stats. Deterministic (no randomness, fixed dates), so renders can be compared.
 */

/** 12 monthly values 0..1 with a seasonal bump that moves with `seed`. */
const trend = (seed: number) => Array.from({ length: 12 }, (_, m) => Math.round((0.55 + 0.45 * Math.sin((m + seed) / 2)) * 100) / 100);

const ORGANIC: [keyword: string, position: number, previous: number, volume: number, cpc: number][] = [
  ['industrial widgets', 3, 4, 14_800, 4.12],
  ['acme widgets', 1, 1, 9_900, 1.05],
  ['custom widget manufacturer', 5, 9, 6_600, 6.8],
  ['stainless steel widgets', 4, 3, 5_400, 3.45],
  ['widget supplier', 7, 7, 4_400, 5.2],
  ['buy widgets online', 9, 0, 3_600, 2.9],
  ['widget price list', 6, 11, 2_900, 1.75],
  ['heavy duty widgets', 8, 6, 2_400, 3.1],
  ['widget assembly service', 11, 14, 1_900, 7.4],
  ['widgets for food processing', 4, 4, 1_600, 5.95],
  ['what is a widget', 12, 10, 12_100, 0.35],
  ['widget sizes chart', 10, 0, 1_300, 0.9],
  ['bulk widgets', 13, 15, 1_000, 4.6],
  ['widget repair kit', 15, 12, 880, 2.25],
  ['precision widgets uk', 6, 8, 720, 3.8],
  ['widget tolerances', 14, 0, 590, 1.2],
  ['anodised aluminium widgets', 9, 9, 480, 4.05],
  ['widget catalogue pdf', 18, 16, 390, 0.7],
  ['acme widget warranty', 2, 2, 320, 0.4],
  ['widget cad drawings', 20, 0, 260, 1.6],
];

const organicKeywords: OrganicKeywordRow[] = ORGANIC.map(([keyword, position, previousPosition, searchVolume, cpc], i) => ({
  keyword,
  position,
  previousPosition,
  searchVolume,
  cpc,
  url: `https://acme-widgets.com/${keyword.replaceAll(' ', '-')}/`,
  trafficPercent: Math.round((18 / (i + 1)) * 100) / 100,
  trafficCostPercent: Math.round((15 / (i + 1.5)) * 100) / 100,
  competition: Math.round(((i * 7) % 10) * 10) / 100,
  results: 1_000_000 * (i + 3),
  trends: trend(i),
}));

const COMPETITORS: [domain: string, relevance: number, common: number, keywords: number, traffic: number, cost: number, paid: number][] = [
  ['widgetworks.com', 0.42, 1_240, 18_300, 64_200, 182_000, 410],
  ['globalwidget.co.uk', 0.35, 980, 9_700, 21_800, 61_500, 95],
  ['precisionparts.io', 0.29, 760, 12_400, 38_900, 97_300, 0],
  ['widgetdepot.com', 0.24, 610, 25_900, 112_400, 240_800, 1_320],
  ['steelfab-direct.com', 0.19, 420, 4_100, 7_300, 18_200, 36],
  ['thewidgetshop.net', 0.15, 330, 2_800, 3_900, 6_100, 12],
];

const competitors: CompetitorRow[] = COMPETITORS.map(([domain, relevance, commonKeywords, organicKeywords, organicTraffic, organicCost, adwordsKeywords]) => ({
  domain,
  relevance,
  commonKeywords,
  organicKeywords,
  organicTraffic,
  organicCost,
  adwordsKeywords,
}));

const PAID: [keyword: string, position: number, volume: number, cpc: number][] = [
  ['industrial widgets', 1, 14_800, 4.12],
  ['custom widget manufacturer', 2, 6_600, 6.8],
  ['widget supplier', 1, 4_400, 5.2],
  ['buy widgets online', 3, 3_600, 2.9],
  ['widget assembly service', 2, 1_900, 7.4],
  ['bulk widgets', 1, 1_000, 4.6],
  ['widgets for food processing', 4, 1_600, 5.95],
  ['precision widgets uk', 2, 720, 3.8],
  ['widget manufacturer near me', 1, 2_200, 8.15],
  ['oem widgets', 3, 590, 6.3],
];

const paidKeywords: AdwordsKeywordRow[] = PAID.map(([keyword, position, searchVolume, cpc], i) => ({
  keyword,
  position,
  previousPosition: position,
  searchVolume,
  cpc,
  visibleUrl: 'acme-widgets.com',
  url: 'https://acme-widgets.com/quote/',
  trafficPercent: Math.round((30 / (i + 1)) * 10) / 10,
  trafficCost: Math.round(900 / (i + 1)),
  competition: 0.8,
  results: 2_000_000,
  trends: trend(i + 3),
}));

export const sampleIntel: SearchIntel = {
  domain: 'acme-widgets.com',
  database: 'us',
  fetchedAt: '2025-03-03T08:15:00.000Z',
  overview: { rank: 48_213, organicKeywords: 3_412, organicTraffic: 27_650, organicCost: 58_400, paidKeywords: 64, paidTraffic: 4_120, paidCost: 9_870 },
  organicKeywords,
  competitors,
  paidKeywords,
  spyfu: {
    stats: {
      searchMonth: 2,
      searchYear: 2025,
      averageOrganicRank: 14.2,
      monthlyPaidClicks: 3_870,
      averageAdRank: 2.1,
      totalOrganicResults: 3_105,
      monthlyBudget: 11_250,
      monthlyOrganicValue: 61_300,
      totalAdsPurchased: 71,
      monthlyOrganicClicks: 24_900,
      strength: 41,
      totalInverseRank: 18_422,
    },
    competitors: competitors.map((c) => ({ domain: c.domain, commonTerms: c.commonKeywords ?? 0 })),
    valuableKeywords: [],
  },
  usage: { semrushUnits: 1_610, spyfuRows: 31 },
};

export const sampleAnalysis: Analysis = {
  headline: 'Acme Widgets earns 27.7k organic visits a month, but widgetdepot.com draws four times as many on the same keywords.',
  executive_summary:
    'Acme Widgets ranks on page one for its core product terms and its organic traffic would cost about $58k a month to buy. ' +
    'Two competitors, widgetdepot.com and widgetworks.com, outrank it on the highest-volume commercial keywords. ' +
    'About $9.9k a month goes to Google Ads, much of it on keywords where the site already ranks in the top five. ' +
    'The quickest win is to move that budget to keywords where it does not rank and to improve the pages ranking 6 to 12.',
  traffic_commentary:
    'Organic traffic is concentrated: the top five keywords bring more than a third of visits. ' +
    'Positions improved for seven of the top twenty keywords since the previous check.',
  competitor_commentary:
    'widgetdepot.com has four times the organic traffic with twice the keywords; widgetworks.com overlaps most (42%) and wins on "industrial widgets". ' +
    'The smaller shops are well behind.',
  paid_search_commentary:
    'Estimated spend is about $9.9k a month across 64 keywords. Four of the top ten paid keywords already rank organically in the top five, so part of the spend buys clicks the site would get anyway.',
  opportunities: [
    { title: 'Pages ranking 6 to 12', detail: 'Six keywords, including "widget price list" (2.9k searches), sit just below the top five; better pages could double their traffic.', impact: 'high' },
    { title: 'Paid spend on owned keywords', detail: '"industrial widgets" ranks 3rd organically and is bought at $4.12 a click; testing a pause could save around $1.5k a month.', impact: 'high' },
    { title: 'Informational searches', detail: '"what is a widget" has 12.1k searches and Acme ranks 12th; a guide page would bring new visitors.', impact: 'medium' },
    { title: 'Technical drawings', detail: '"widget cad drawings" is new at position 20; a downloadable CAD library would strengthen it.', impact: 'low' },
  ],
  actions: [
    { action: 'Rewrite the price list and assembly service pages', why: 'Moves two keywords worth 4.8k searches a month into the top five.', effort: 'medium' },
    { action: 'Pause ads on keywords ranking in the top three', why: 'Saves budget for keywords the site does not rank for.', effort: 'low' },
    { action: 'Publish a "what is a widget" guide', why: 'Captures the largest informational query in the category.', effort: 'medium' },
    { action: 'Build a CAD drawings library', why: 'Earns links from engineers and ranks for drawing searches.', effort: 'high' },
  ],
};

/** A fresh copy each call: tests may change it freely. */
export function sampleReportView(overrides: Partial<ReportView> = {}): ReportView {
  return {
    company: 'Acme Widgets',
    intel: structuredClone(sampleIntel),
    analysis: structuredClone(sampleAnalysis),
    generatedAt: '2025-03-04T09:30:00.000Z',
    business: { name: 'Northlight Insights Ltd', address: '12 Harbour Street, Bristol BS1 4QA, United Kingdom' },
    sampleServices: [],
    ...overrides,
  };
}
