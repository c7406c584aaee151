{{/*
imgsweep's Prometheus recording and alerting rules, rendered from values (prometheusRule.alerts, runbookBaseUrl).
This is their one source: deploy/prometheus/imgsweep-rules.yaml is this template rendered with the chart's
defaults (deploy/prometheus/render-rules.sh writes it; tests/integration/test_helm_chart.py checks they agree).
Prometheus's own templates in the annotations are written {{"{{"}} ... }} so that helm leaves them alone.
*/}}

{{/* Each alert's defaults; prometheusRule.alerts.<alert> overrides any of them (values.yaml lists the same). */}}
{{- define "imgsweep.alertDefaults" -}}
{{- toJson (dict
  "ImgsweepDown" (dict "for" "5m" "severity" "critical")
  "ImgsweepReplicaDown" (dict "for" "10m" "severity" "warning")
  "ImgsweepNoPartitionsAssigned" (dict "for" "10m" "severity" "critical")
  "ImgsweepFatal" (dict "for" "1m" "severity" "critical")
  "ImgsweepAccountHalted" (dict "for" "5m" "severity" "critical")
  "ImgsweepOutputsBlocked" (dict "for" "5m" "severity" "critical")
  "ImgsweepQuotaExhausted" (dict "for" "5m" "severity" "critical")
  "ImgsweepQuotaPaymentRequired" (dict "for" "5m" "severity" "critical")
  "ImgsweepQuotaLow" (dict "for" "15m" "severity" "warning" "remainingFraction" 0.1)
  "ImgsweepQuotaProjectedExhaustion" (dict "for" "30m" "severity" "warning" "marginSeconds" 3600)
  "ImgsweepBudgetWillNotFit" (dict "for" "15m" "severity" "warning")
  "ImgsweepBudgetLimited" (dict "for" "30m" "severity" "warning")
  "ImgsweepBudgetHeldUntilReset" (dict "for" "5m" "severity" "warning")
  "ImgsweepImageFailureRatioHigh" (dict "for" "15m" "severity" "warning" "ratio" 0.05 "minImages" 20)
  "ImgsweepConsumerLagGrowing" (dict "for" "30m" "severity" "warning" "minLagMessages" 100)
  "ImgsweepConsumerStalled" (dict "for" "15m" "severity" "critical")
  "ImgsweepAccountStalled" (dict "for" "15m" "severity" "critical")
  "ImgsweepNoOutcomes" (dict "for" "15m" "severity" "critical")
  "ImgsweepRouterStalled" (dict "for" "15m" "severity" "critical")
  "ImgsweepDeadLettersGrowing" (dict "for" "5m" "severity" "warning")
  "ImgsweepCollectionWithoutAccount" (dict "for" "5m" "severity" "warning")
  "ImgsweepUnreadEventsNearRetention" (dict "for" "10m" "severity" "critical" "maxAgeSeconds" 302400)
  "ImgsweepTransactionsAborting" (dict "for" "10m" "severity" "warning" "abortsPerMinute" 1)
  "ImgsweepTransactionCommitsSlow" (dict "for" "15m" "severity" "warning" "p99Seconds" 0.25)
  "ImgsweepBrakeTripped" (dict "for" "0m" "severity" "critical")
  "ImgsweepPausedForLong" (dict "for" "4h" "severity" "warning")
  "ImgsweepBudgetStateNotSaved" (dict "for" "10m" "severity" "warning")
) }}
{{- end }}

{{/*
One alert's settings as JSON, its values over its defaults (an upgrade with --reuse-values from a chart without
prometheusRule.alerts gets the defaults), or {} when it is disabled. Called with (list $ "<alert>").
*/}}
{{- define "imgsweep.alert" -}}
{{- $root := index . 0 }}
{{- $name := index . 1 }}
{{- $defaults := index (include "imgsweep.alertDefaults" $root | fromJson) $name }}
{{- $set := dig "alerts" $name dict ($root.Values.prometheusRule | default dict) | default dict }}
{{- /* Not merge: it would take a default over a false or a 0 that was set. */}}
{{- $alert := set (deepCopy $defaults) "enabled" true }}
{{- range $key, $value := $set }}{{ $_ := set $alert $key $value }}{{ end }}
{{- if $alert.enabled }}{{ toJson $alert }}{{ else }}{}{{ end }}
{{- end }}

{{/* Where each alert's runbook_url points: runbookBaseUrl, then #<section of docs/runbooks.md>. */}}
{{- define "imgsweep.runbookBaseUrl" -}}
{{- .Values.runbookBaseUrl | default "docs/runbooks.md" | trimSuffix "#" }}
{{- end }}

{{/* A fraction as a percentage for people: 0.1 -> 10% */}}
{{- define "imgsweep.percent" -}}
{{- printf "%v%%" (round (mulf . 100) 4) }}
{{- end }}

{{/* Seconds for people: 3600 -> an hour, 7200 -> 2 hours, 90 -> 90 seconds */}}
{{- define "imgsweep.seconds" -}}
{{- $s := int64 . }}
{{- if eq $s 3600 }}an hour
{{- else if and (gt $s 0) (eq (mod $s 3600) 0) }}{{ div $s 3600 }} hours
{{- else if eq $s 60 }}a minute
{{- else if and (gt $s 0) (eq (mod $s 60) 0) }}{{ div $s 60 }} minutes
{{- else }}{{ $s }} seconds{{ end }}
{{- end }}

{{/* A Prometheus duration for people: 5m -> 5 minutes; a compound one (1h30m) as it is */}}
{{- define "imgsweep.duration" -}}
{{- $units := dict "s" "second" "m" "minute" "h" "hour" "d" "day" "w" "week" }}
{{- $match := regexFind "^[0-9]+[smhdw]$" . }}
{{- if $match }}
{{- $n := trimSuffix (substr (sub (len .) 1 | int) (len .) .) . }}
{{- $n }} {{ index $units (substr (sub (len .) 1 | int) (len .) .) }}{{ if ne $n "1" }}s{{ end }}
{{- else }}{{ . }}{{ end }}
{{- end }}

{{/*
When an account's commit and outcome stall alerts are excused by what rightly holds the accounts' events
(namespace_job:imgsweep_account_held:max: a wait, a pause or a brake), matched on (namespace, job, account): an
account's series by its own; the "*" series (several accounts, no router: every partition is every account's) by
any account's.
*/}}
{{- define "imgsweep.accountHeld" -}}
namespace_job:imgsweep_account_held:max == 1
            or label_replace(max by (namespace, job) (namespace_job:imgsweep_account_held:max), "account", "*", "", "") == 1
{{- end }}

{{- define "imgsweep.rules" -}}
{{- $runbook := include "imgsweep.runbookBaseUrl" . }}
{{- $anyAlert := false }}
{{- range $name, $_ := include "imgsweep.alertDefaults" . | fromJson }}
{{- if ne (include "imgsweep.alert" (list $ $name)) "{}" }}{{ $anyAlert = true }}{{ end }}
{{- end -}}
# imgsweep's Prometheus recording and alerting rules, made from the Helm chart's template
# helm/imgsweep/templates/_rules.tpl: the chart renders them from its values (each alert's enabled, for,
# severity and thresholds under prometheusRule.alerts, the runbook links under runbookBaseUrl), and
# deploy/prometheus/imgsweep-rules.yaml is them with the chart's defaults (deploy/prometheus/render-rules.sh).
#
# Label conventions: every series carries `job` and `instance` (added by Prometheus) and, on Kubernetes,
# `namespace` (the usual relabelling of __meta_kubernetes_namespace). Rules aggregate by (namespace, job):
# the replicas of one deployment share one consumer group. A deployment may use several JD accounts
# (IMGSWEEP_ACCOUNTS__<NAME>__*), each with its own rate limit, quota and call budget: the API, quota, rate
# and budget series carry `account` (the account's name; "default" when only IMGSWEEP_API__* is set), and
# the rules on them aggregate by (namespace, job, account), so each account alerts on its own. So do the
# pipeline's consumer lag, records consumed, committed and invalid, and outcomes: their `account` is the account
# whose partition the record is on. Behind the router (IMGSWEEP_KAFKA__REPARTITION, decision 0022) each partition
# is one account's; with one account, that account's; without the router and with several accounts every
# partition carries every account's events and `account` is "*" (any account's state then excuses their
# alerts, as nothing tells which account holds them). The recording rules keep their namespace_job: names and
# also keep `account` where their input has it.
# imgsweep_quota_reset_seconds has no `account`: the daily reset is the same for every account.
# Counters appear only inside rate()/increase(). Each alert links its section of docs/runbooks.md
# (runbookBaseUrl, by default that path in imgsweep's source tree).
#
# Tested by `promtool test rules deploy/prometheus/imgsweep-rules.test.yaml` and, against series scraped
# from the real service, by tests/integration/test_observability.py.
groups:
  - name: imgsweep.recording
    rules:
      # Each account's calls left, as the API last said. Only replicas that called the API for that account
      # in the last 30 minutes count: the gauge keeps its last value while a replica is idle, so an idle
      # replica would otherwise report yesterday's number (or 0 before its first call). -1 (unlimited) is
      # dropped.
      - record: namespace_job:imgsweep_quota_remaining_calls:min
        expr: |
          min by (namespace, job, account) (
            imgsweep_quota_remaining_calls >= 0
            and on (namespace, job, instance, account)
            sum by (namespace, job, instance, account) (increase(imgsweep_api_calls_total{code!="dry_run"}[30m])) > 0
          )

      # Each account's day's quota, estimated as the most calls left seen over the last day (just after the
      # daily reset, remaining is the whole quota). Underestimates on the first day after a deployment.
      - record: namespace_job:imgsweep_quota_remaining_calls:max_over_time1d
        expr: max_over_time(namespace_job:imgsweep_quota_remaining_calls:min[1d])

      # Each account's calls spent per second, from how fast "calls left" falls: it counts every client of the
      # account, not only imgsweep. A reset makes the slope positive, clamped to 0 (no burn) for the hour after it.
      - record: namespace_job:imgsweep_quota_remaining_calls:burn_rate1h
        expr: clamp_min(-deriv(namespace_job:imgsweep_quota_remaining_calls:min[1h]), 0)

      # Share of the images decided that failed (retries exhausted, rejected batches, unknown collection, a
      # collection no account holds).
      - record: namespace_job:imgsweep_images_failed:ratio_rate15m
        expr: |
          sum by (namespace, job) (rate(imgsweep_images_total{status="failed"}[15m]))
          /
          sum by (namespace, job) (rate(imgsweep_images_total[15m]))

      # Messages the pipeline has not processed (behind the router: on the collections topic), summed over the
      # partitions of each account (each partition is reported by the one replica it is assigned to).
      - record: namespace_job:imgsweep_consumer_lag_messages:sum
        expr: sum by (namespace, job, account) (imgsweep_consumer_lag_messages)

      # 1 while an account waits for a reason of its own: its quota is spent, its paid pack is empty, it is
      # halted on a fatal API answer, or its budget holds its calls (until the reset, or past the max wait); else
      # 0. What excuses that account's stall alerts, and only that account's.
      - record: namespace_job:imgsweep_account_waiting:max
        expr: |
          max by (namespace, job, account) (
            label_replace(imgsweep_quota_exhausted, "why", "quota_exhausted", "", "")
            or label_replace(imgsweep_quota_payment_required, "why", "payment_required", "", "")
            or label_replace(imgsweep_account_halted, "why", "halted", "", "")
            or label_replace(max without (why) (imgsweep_budget_waiting_for_reset), "why", "held_until_reset", "", "")
            or label_replace(imgsweep_budget_limited, "why", "budget_limited", "", "")
          )

      # 1 while an account's events rightly hold its partitions' commits and outcomes: it waits (above), or its
      # deletions, or those of a collection it holds, are stopped on purpose (`imgsweep pause`) or by a tripped
      # brake (imgsweep_account_stopped), each of which has its own alert (ImgsweepPausedForLong, a warning;
      # ImgsweepBrakeTripped, critical); else 0. What excuses that account's ImgsweepConsumerStalled and
      # ImgsweepNoOutcomes, so a pause does not page and a brake pages once. ImgsweepAccountStalled keeps the
      # waits alone: its demand already leaves paused and braked images out, so a stop of one collection does not
      # hide the account's other collections making no call.
      - record: namespace_job:imgsweep_account_held:max
        expr: |
          max by (namespace, job, account) (
            namespace_job:imgsweep_account_waiting:max
            or max without (why) (imgsweep_account_stopped)
          )

      # When the calls imgsweep may still spend today on an account run out at its last hour's pace: the
      # account's budget's spendable calls (calls left less the reserve, as each replica's planner counts them;
      # the lowest replica's) over imgsweep's own calls a second on that account. +Inf while it makes no call
      # on the account or the account is unlimited.
      - record: namespace_job:imgsweep_budget_spendable_calls:seconds_to_exhaustion1h
        expr: |
          min by (namespace, job, account) (imgsweep_budget_spendable_calls)
          /
          sum by (namespace, job, account) (rate(imgsweep_api_calls_total{code!="dry_run"}[1h]))

  {{- if $anyAlert }}

  - name: imgsweep.alerts
    rules:
      {{- with include "imgsweep.alert" (list $ "ImgsweepDown") | fromJson }}
      - alert: ImgsweepDown
        # Targets of a job that exposed imgsweep_build_info in the last day, i.e. imgsweep's own targets,
        # whatever the job is called.
        expr: |
          sum by (namespace, job) (
            up and on (namespace, job) group by (namespace, job) (max_over_time(imgsweep_build_info[1d]))
          ) == 0
        for: {{ .for }}
        labels:
          severity: {{ .severity }}
        annotations:
          summary: "imgsweep is down in {{"{{"}} $labels.namespace }}"
          description: >-
            Prometheus has not scraped any replica of {{"{{"}} $labels.job }} in {{"{{"}} $labels.namespace }}
            for {{ include "imgsweep.duration" .for }}: no delisted product's images are being deleted and the input
            topic's backlog grows.
          runbook_url: {{ $runbook }}#imgsweep-down
      {{- end }}
      {{- with include "imgsweep.alert" (list $ "ImgsweepReplicaDown") | fromJson }}

      - alert: ImgsweepReplicaDown
        expr: |
          up == 0
          and on (namespace, job) group by (namespace, job) (max_over_time(imgsweep_build_info[1d]))
        for: {{ .for }}
        labels:
          severity: {{ .severity }}
        annotations:
          summary: "imgsweep replica {{"{{"}} $labels.instance }} cannot be scraped"
          description: >-
            {{"{{"}} $labels.instance }} ({{"{{"}} $labels.job }} in {{"{{"}} $labels.namespace }}) has not answered /metrics for
            {{ include "imgsweep.duration" .for }}. The other replicas take over its partitions once the consumer group rebalances.
          runbook_url: {{ $runbook }}#replica-down
      {{- end }}
      {{- with include "imgsweep.alert" (list $ "ImgsweepNoPartitionsAssigned") | fromJson }}

      - alert: ImgsweepNoPartitionsAssigned
        expr: sum by (namespace, job) (imgsweep_assigned_partitions) == 0
        for: {{ .for }}
        labels:
          severity: {{ .severity }}
        annotations:
          summary: "No imgsweep replica owns a partition in {{"{{"}} $labels.namespace }}"
          description: >-
            Replicas of {{"{{"}} $labels.job }} are running but none has had an input partition assigned
            for {{ include "imgsweep.duration" .for }}: nothing is consumed. Usually the brokers are unreachable or the
            consumer group cannot be joined.
          runbook_url: {{ $runbook }}#no-partitions-assigned
      {{- end }}
      {{- with include "imgsweep.alert" (list $ "ImgsweepFatal") | fromJson }}

      - alert: ImgsweepFatal
        expr: max by (namespace, job, instance) (imgsweep_fatal) == 1
        for: {{ .for }}
        labels:
          severity: {{ .severity }}
        annotations:
          summary: "imgsweep {{"{{"}} $labels.instance }} stopped on a fatal error"
          description: >-
            {{"{{"}} $labels.instance }} ({{"{{"}} $labels.job }} in {{"{{"}} $labels.namespace }}) met a fatal Kafka error (the consumer's, or
            the producer's outside a transaction): it stopped calling, paused its partitions and commits nothing
            until it is fixed and restarted. /readyz names the reason. A fatal API answer is ImgsweepAccountHalted.
          runbook_url: {{ $runbook }}#fatal
      {{- end }}
      {{- with include "imgsweep.alert" (list $ "ImgsweepAccountHalted") | fromJson }}

      - alert: ImgsweepAccountHalted
        # One account's calls are held on a fatal API answer; the others go on. Probes resume it once fixed.
        expr: max by (namespace, job, account) (imgsweep_account_halted) == 1
        for: {{ .for }}
        labels:
          severity: {{ .severity }}
        annotations:
          summary: "imgsweep's calls on account {{"{{"}} $labels.account }} are halted on a fatal API answer in {{"{{"}} $labels.namespace }}"
          description: >-
            The delete API answered account {{"{{"}} $labels.account }} with a fatal code (keys, signature, clock, permission
            or endpoint): {{"{{"}} $labels.job }} makes no call on it but a probe, after a minute and then up to every
            15 minutes, and resumes by itself once one is answered. Its events wait uncommitted; other accounts go
            on. /readyz names the code.
          runbook_url: {{ $runbook }}#account-halted
      {{- end }}
      {{- with include "imgsweep.alert" (list $ "ImgsweepOutputsBlocked") | fromJson }}

      - alert: ImgsweepOutputsBlocked
        # IMGSWEEP_KAFKA__MAX_UNACKNOWLEDGED records wait for Kafka: no call starts until they are acknowledged.
        expr: max by (namespace, job, instance) (imgsweep_outputs_blocked) == 1
        for: {{ .for }}
        labels:
          severity: {{ .severity }}
        annotations:
          summary: "imgsweep {{"{{"}} $labels.instance }} cannot deliver its outcomes"
          description: >-
            {{"{{"}} $labels.instance }} ({{"{{"}} $labels.job }} in {{"{{"}} $labels.namespace }}) has as many outcome and dead-letter
            records waiting for Kafka's acknowledgement as it may (the outcome or dead-letter topic is missing or
            unwritable, or no broker answers): it starts no API call until they are delivered, then resumes by
            itself. /readyz names the reason.
          runbook_url: {{ $runbook }}#outputs-blocked
      {{- end }}
      {{- with include "imgsweep.alert" (list $ "ImgsweepQuotaExhausted") | fromJson }}

      - alert: ImgsweepQuotaExhausted
        # Calls are also held while a paid pack is spent; ImgsweepQuotaPaymentRequired says that instead.
        expr: |
          max by (namespace, job, account) (imgsweep_quota_exhausted) == 1
          unless on (namespace, job, account) max by (namespace, job, account) (imgsweep_quota_payment_required) == 1
        for: {{ .for }}
        labels:
          severity: {{ .severity }}
        annotations:
          summary: "imgsweep's daily API quota of account {{"{{"}} $labels.account }} is spent in {{"{{"}} $labels.namespace }}"
          description: >-
            The delete API answered that the daily quota of account {{"{{"}} $labels.account }} is spent: {{"{{"}} $labels.job }}
            makes no call on it until the reset (midnight China Standard Time by default) and the images of its
            collections wait. Other accounts go on.
          runbook_url: {{ $runbook }}#quota-exhausted
      {{- end }}
      {{- with include "imgsweep.alert" (list $ "ImgsweepQuotaPaymentRequired") | fromJson }}

      - alert: ImgsweepQuotaPaymentRequired
        # Stays 1 between the hourly probes, until a call goes through again.
        expr: max by (namespace, job, account) (imgsweep_quota_payment_required) == 1
        for: {{ .for }}
        labels:
          severity: {{ .severity }}
        annotations:
          summary: "imgsweep's paid API call pack of account {{"{{"}} $labels.account }} is spent in {{"{{"}} $labels.namespace }}"
          description: >-
            The delete API answers 10010 (payment required): the paid call pack of account {{"{{"}} $labels.account }}
            ran out, and no daily reset brings it back. {{"{{"}} $labels.job }} holds every call on that account and
            probes about once an hour; its deletes resume by themselves once the pack is topped up.
          runbook_url: {{ $runbook }}#quota-payment-required
      {{- end }}
      {{- with include "imgsweep.alert" (list $ "ImgsweepQuotaLow") | fromJson }}

      - alert: ImgsweepQuotaLow
        expr: |
          namespace_job:imgsweep_quota_remaining_calls:min
            < {{ .remainingFraction }} * namespace_job:imgsweep_quota_remaining_calls:max_over_time1d
          unless on (namespace, job, account) max by (namespace, job, account) (imgsweep_quota_exhausted) == 1
        for: {{ .for }}
        labels:
          severity: {{ .severity }}
        annotations:
          summary: "imgsweep's daily API quota of account {{"{{"}} $labels.account }} is below {{ include "imgsweep.percent" .remainingFraction }} in {{"{{"}} $labels.namespace }}"
          description: >-
            {{"{{"}} $value | humanize }} calls are left today on account {{"{{"}} $labels.account }} for {{"{{"}} $labels.job }},
            under {{ include "imgsweep.percent" .remainingFraction }} of the most seen in the last day. When they are spent, the deletes of its collections wait
            for the reset.
          runbook_url: {{ $runbook }}#quota-low
      {{- end }}
      {{- with include "imgsweep.alert" (list $ "ImgsweepQuotaProjectedExhaustion") | fromJson }}

      - alert: ImgsweepQuotaProjectedExhaustion
        # At the last hour's pace an account's calls left run out more than marginSeconds before the daily reset
        # (one reset for every account: group_left matches each account to it).
        expr: |
          namespace_job:imgsweep_quota_remaining_calls:min / namespace_job:imgsweep_quota_remaining_calls:burn_rate1h
            < on (namespace, job) group_left () (max by (namespace, job) (imgsweep_quota_reset_seconds) - {{ .marginSeconds }})
          unless on (namespace, job, account) max by (namespace, job, account) (imgsweep_quota_exhausted) == 1
        for: {{ .for }}
        labels:
          severity: {{ .severity }}
        annotations:
          summary: "imgsweep will run out of API quota of account {{"{{"}} $labels.account }} before the daily reset in {{"{{"}} $labels.namespace }}"
          description: >-
            At the last hour's pace the calls left on account {{"{{"}} $labels.account }} run out more than
            {{ include "imgsweep.seconds" .marginSeconds }} before the daily reset (the dashboard's quota row shows when);
            the deletes of its collections by {{"{{"}} $labels.job }} would then wait for the reset.
          runbook_url: {{ $runbook }}#quota-projected-exhaustion
      {{- end }}
      {{- with include "imgsweep.alert" (list $ "ImgsweepBudgetWillNotFit") | fromJson }}

      - alert: ImgsweepBudgetWillNotFit
        # The replicas' planners of an account expect today's images of the account's collections (those
        # waiting and the rest of the day's, from the arrival curves they learned, each of its own partitions)
        # to need more full calls than may still be spent on the account before the reset (the account's
        # count, as the replica that heard least recently has it).
        expr: |
          sum by (namespace, job, account) (imgsweep_budget_needed_calls)
            - min by (namespace, job, account) (imgsweep_budget_spendable_calls)
            > 0
        for: {{ .for }}
        labels:
          severity: {{ .severity }}
        annotations:
          summary: "Today's delists will not fit imgsweep's call budget of account {{"{{"}} $labels.account }} in {{"{{"}} $labels.namespace }}"
          description: >-
            {{"{{"}} $labels.job }} expects today's images of account {{"{{"}} $labels.account }} to need
            {{"{{"}} $value | humanize }} more full calls than it may still spend on it before the daily reset (calls
            left less the reserve). It keeps every call of the account for full batches, partial ones wait, and
            some images will wait for the reset: raise the account's allowance, shrink its reserve, or accept
            the longer waits.
          runbook_url: {{ $runbook }}#budget-will-not-fit
      {{- end }}
      {{- with include "imgsweep.alert" (list $ "ImgsweepBudgetLimited") | fromJson }}

      - alert: ImgsweepBudgetLimited
        # The value is the projected wait, so the annotation can say it.
        expr: |
          max by (namespace, job, account) (imgsweep_budget_projected_wait_seconds)
          and on (namespace, job, account) max by (namespace, job, account) (imgsweep_budget_limited) == 1
        for: {{ .for }}
        labels:
          severity: {{ .severity }}
        annotations:
          summary: "imgsweep's call budget of account {{"{{"}} $labels.account }} holds images past the max wait in {{"{{"}} $labels.namespace }}"
          description: >-
            For {{ include "imgsweep.duration" .for }} {{"{{"}} $labels.job }} has held images of account {{"{{"}} $labels.account }} longer than
            IMGSWEEP_BATCH__MAX_WAIT_SECONDS because the account's call budget has no call for them (the budget
            wins over the max wait); the longest projected wait is {{"{{"}} $value | humanizeDuration }}.
          runbook_url: {{ $runbook }}#budget-limited
      {{- end }}
      {{- with include "imgsweep.alert" (list $ "ImgsweepBudgetHeldUntilReset") | fromJson }}

      - alert: ImgsweepBudgetHeldUntilReset
        # Only an account's reserve is left (or its pack's daily spending limit is reached): nothing is called
        # on it until the reset, as if its quota were spent. A spent quota is ImgsweepQuotaExhausted.
        expr: max by (namespace, job, account, why) (imgsweep_budget_waiting_for_reset{why!="quota_exhausted"}) == 1
        for: {{ .for }}
        labels:
          severity: {{ .severity }}
        annotations:
          summary: "imgsweep waits for the daily reset on account {{"{{"}} $labels.account }} ({{"{{"}} $labels.why }}) in {{"{{"}} $labels.namespace }}"
          description: >-
            {{"{{"}} $labels.job }} makes no call on account {{"{{"}} $labels.account }} until the daily reset: reserve_only,
            the calls left are the reserve kept for the shop's own searches; spend_limit, a pack's daily spending
            limit is reached. The images of its collections wait; nothing is lost.
          runbook_url: {{ $runbook }}#budget-held-until-reset
      {{- end }}
      {{- with include "imgsweep.alert" (list $ "ImgsweepImageFailureRatioHigh") | fromJson }}

      - alert: ImgsweepImageFailureRatioHigh
        expr: |
          namespace_job:imgsweep_images_failed:ratio_rate15m > {{ .ratio }}
          and on (namespace, job) sum by (namespace, job) (increase(imgsweep_images_total[15m])) >= {{ .minImages }}
        for: {{ .for }}
        labels:
          severity: {{ .severity }}
        annotations:
          summary: "{{"{{"}} $value | humanizePercentage }} of images fail to delete in {{"{{"}} $labels.namespace }}"
          description: >-
            Over the last 15 minutes {{"{{"}} $value | humanizePercentage }} of the images {{"{{"}} $labels.job }} decided
            failed (threshold {{ include "imgsweep.percent" .ratio }}). Their events end with a failed or partially_deleted outcome; events whose
            retries ran out are also dead-lettered.
          runbook_url: {{ $runbook }}#image-failure-ratio-high
      {{- end }}
      {{- with include "imgsweep.alert" (list $ "ImgsweepConsumerLagGrowing") | fromJson }}

      - alert: ImgsweepConsumerLagGrowing
        # The whole pipeline's lag (every account's partitions): how far behind the input it is.
        expr: |
          sum by (namespace, job) (namespace_job:imgsweep_consumer_lag_messages:sum) > {{ .minLagMessages }}
          and on (namespace, job) sum by (namespace, job) (deriv(namespace_job:imgsweep_consumer_lag_messages:sum[30m])) > 0
        for: {{ .for }}
        labels:
          severity: {{ .severity }}
        annotations:
          summary: "imgsweep falls behind its input in {{"{{"}} $labels.namespace }}"
          description: >-
            {{"{{"}} $labels.job }}'s consumer lag is {{"{{"}} $value | humanize }} messages and has kept growing for 30
            minutes: events arrive faster than they are deleted.
          runbook_url: {{ $runbook }}#consumer-lag-growing
      {{- end }}
      {{- with include "imgsweep.alert" (list $ "ImgsweepConsumerStalled") | fromJson }}

      - alert: ImgsweepConsumerStalled
        # Per account: lag on its partitions and no commit moved past any of their records. Excused by that
        # account's own wait, pause or brake (its events rightly hold its partitions' commits; a pause and a brake
        # have their own alerts), never by another's; the "*" series (several accounts, no router) by any
        # account's; every series by a replica's fatal state.
        expr: |
          namespace_job:imgsweep_consumer_lag_messages:sum > 0
          and on (namespace, job, account) sum by (namespace, job, account) (increase(imgsweep_committed_records_total[15m])) == 0
          unless on (namespace, job, account) ({{ include "imgsweep.accountHeld" . }})
          unless on (namespace, job) max by (namespace, job) (imgsweep_fatal) == 1
        for: {{ .for }}
        labels:
          severity: {{ .severity }}
        annotations:
          summary: "imgsweep commits nothing of account {{"{{"}} $labels.account }} while its events wait in {{"{{"}} $labels.namespace }}"
          description: >-
            {{"{{"}} $value | humanize }} messages wait on the partitions of account {{"{{"}} $labels.account }} ("*": every
            account's, without the router) and {{"{{"}} $labels.job }} has committed none of their records for 15 minutes,
            although that account's quota is not spent, its pack is not empty, it is not halted, its budget holds
            nothing back, nothing of it is paused or braked and no replica is in the fatal state. Another account's
            wait, pause or brake does not excuse it.
          runbook_url: {{ $runbook }}#consumer-stalled
      {{- end }}
      {{- with include "imgsweep.alert" (list $ "ImgsweepAccountStalled") | fromJson }}

      - alert: ImgsweepAccountStalled
        # Per account, excused only by that account's own state (decision 0022): it has calls to make now (its
        # waiting images, paused and braked ones left out) and made none in 15 minutes, although its quota is not
        # spent, its pack not empty, it is not halted and its budget holds nothing back.
        expr: |
          max by (namespace, job, account) (imgsweep_qps_demand_calls) > 0
          and on (namespace, job, account) sum by (namespace, job, account) (increase(imgsweep_api_calls_total[15m])) == 0
          unless on (namespace, job, account) namespace_job:imgsweep_account_waiting:max == 1
        for: {{ .for }}
        labels:
          severity: {{ .severity }}
        annotations:
          summary: "imgsweep makes no call for account {{"{{"}} $labels.account }} while it has work in {{"{{"}} $labels.namespace }}"
          description: >-
            {{"{{"}} $labels.job }} has had calls to make for account {{"{{"}} $labels.account }} for 15 minutes and made
            none, although that account's quota is not spent, its pack is not empty, it is not halted and its budget
            holds nothing back. Another account's state does not excuse it.
          runbook_url: {{ $runbook }}#account-stalled
      {{- end }}
      {{- with include "imgsweep.alert" (list $ "ImgsweepNoOutcomes") | fromJson }}

      - alert: ImgsweepNoOutcomes
        # Per account: valid input arrived on its partitions (consumed, or piling up as lag) but no outcome of
        # theirs was published. Excused as ImgsweepConsumerStalled is: by that account's own wait, pause or brake only.
        expr: |
          (
            sum by (namespace, job, account) (increase(imgsweep_events_consumed_total[30m]))
              - sum by (namespace, job, account) (increase(imgsweep_invalid_events_total[30m])) > 0
            or
            delta(namespace_job:imgsweep_consumer_lag_messages:sum[30m]) > 0
          )
          and on (namespace, job, account) sum by (namespace, job, account) (increase(imgsweep_outcomes_total[30m])) == 0
          unless on (namespace, job, account) ({{ include "imgsweep.accountHeld" . }})
          unless on (namespace, job) max by (namespace, job) (imgsweep_fatal) == 1
        for: {{ .for }}
        labels:
          severity: {{ .severity }}
        annotations:
          summary: "imgsweep publishes no outcomes for account {{"{{"}} $labels.account }} while its input arrives in {{"{{"}} $labels.namespace }}"
          description: >-
            Events arrived on the partitions of account {{"{{"}} $labels.account }} ("*": every account's, without the
            router) in the last 30 minutes but {{"{{"}} $labels.job }} acknowledged no outcome of theirs, although that
            account's quota is not spent, its pack is not empty, it is not halted, its budget holds nothing back,
            nothing of it is paused or braked and no replica is in the fatal state. Another account's wait, pause or
            brake does not excuse it.
          runbook_url: {{ $runbook }}#no-outcomes
      {{- end }}
      {{- with include "imgsweep.alert" (list $ "ImgsweepRouterStalled") | fromJson }}

      - alert: ImgsweepRouterStalled
        # The router (decision 0022) reads the input for every account and waits for none: input it has not
        # read and no commit of the input's offsets in 15 minutes is its own stall, whatever the accounts do.
        expr: |
          sum by (namespace, job) (imgsweep_router_lag_messages) > 0
          and on (namespace, job) sum by (namespace, job) (increase(imgsweep_router_commits_total[15m])) == 0
        for: {{ .for }}
        labels:
          severity: {{ .severity }}
        annotations:
          summary: "imgsweep's router forwards nothing while input waits in {{"{{"}} $labels.namespace }}"
          description: >-
            {{"{{"}} $value | humanize }} input records wait for {{"{{"}} $labels.job }}'s router and it has committed none
            of the input's offsets for 15 minutes: nothing reaches the collections topic, so no account's events
            are deleted. No account's quota or budget excuses it.
          runbook_url: {{ $runbook }}#router-stalled
      {{- end }}
      {{- with include "imgsweep.alert" (list $ "ImgsweepDeadLettersGrowing") | fromJson }}

      - alert: ImgsweepDeadLettersGrowing
        # no_account has its own alert, ImgsweepCollectionWithoutAccount.
        expr: sum by (namespace, job, reason) (increase(imgsweep_dead_letters_total{reason!="no_account"}[30m])) > 0
        for: {{ .for }}
        labels:
          severity: {{ .severity }}
        annotations:
          summary: "imgsweep dead-letters events ({{"{{"}} $labels.reason }}) in {{"{{"}} $labels.namespace }}"
          description: >-
            {{"{{"}} $value | humanize }} events went to the dead-letter topic with reason {{"{{"}} $labels.reason }} in the
            last 30 minutes. invalid_event: a producer sends records imgsweep cannot read. retries_exhausted:
            the API kept failing; replay them once it recovers. item_failed: the API refused an image for good
            (e.g. NO_RELATIVE_COLLECTION); replay once it is fixed. internal_error: a bug in imgsweep.
          runbook_url: {{ $runbook }}#dead-letters-growing
      {{- end }}
      {{- with include "imgsweep.alert" (list $ "ImgsweepCollectionWithoutAccount") | fromJson }}

      - alert: ImgsweepCollectionWithoutAccount
        # An event whose collection no configured account holds (IMGSWEEP_ACCOUNTS__<NAME>__COLLECTIONS, and no
        # account has "*"): failed outcome and a dead-letter copy, never a call. A configuration problem.
        expr: sum by (namespace, job) (increase(imgsweep_dead_letters_total{reason="no_account"}[30m])) > 0
        for: {{ .for }}
        labels:
          severity: {{ .severity }}
        annotations:
          summary: "imgsweep gets events of a collection no account holds in {{"{{"}} $labels.namespace }}"
          description: >-
            {{"{{"}} $value | humanize }} events went to the dead-letter topic with reason no_account in the last 30
            minutes: their collection is in no account's IMGSWEEP_ACCOUNTS__<NAME>__COLLECTIONS (and no account
            of {{"{{"}} $labels.job }} takes "*"), so their images were not deleted (failed outcome, no call). Add the
            collection to the account that holds it, then replay the dead letters.
          runbook_url: {{ $runbook }}#collection-without-account
      {{- end }}
      {{- with include "imgsweep.alert" (list $ "ImgsweepUnreadEventsNearRetention") | fromJson }}

      - alert: ImgsweepUnreadEventsNearRetention
        # The oldest unread event's age against the input topic's retention: at the retention it is deleted
        # unread and its images stay searchable. maxAgeSeconds is the operator's: half of the input topic's
        # retention.ms in seconds (302400 = half of Kafka's default 7 days; half leaves days to act in).
        expr: max by (namespace, job) (imgsweep_consumer_lag_seconds) > {{ .maxAgeSeconds }}
        for: {{ .for }}
        labels:
          severity: {{ .severity }}
        annotations:
          summary: "imgsweep's oldest unread event nears the input's retention in {{"{{"}} $labels.namespace }}"
          description: >-
            The oldest event {{"{{"}} $labels.job }} has not finished is {{"{{"}} $value | humanizeDuration }} old, over
            prometheusRule.alerts.ImgsweepUnreadEventsNearRetention.maxAgeSeconds (half of the input topic's
            retention): events that reach the retention are deleted from the topic unread and their images are
            never removed.
          runbook_url: {{ $runbook }}#unread-events-near-retention
      {{- end }}
      {{- with include "imgsweep.alert" (list $ "ImgsweepTransactionsAborting") | fromJson }}

      - alert: ImgsweepTransactionsAborting
        # Each abort produces the transaction's records again and delays their offsets: now and then is
        # harmless (a rebalance, a broker restart), all the time means outcomes wait and a broker is unwell.
        expr: sum by (namespace, job) (rate(imgsweep_transaction_aborts_total[5m])) * 60 > {{ .abortsPerMinute }}
        for: {{ .for }}
        labels:
          severity: {{ .severity }}
        annotations:
          summary: "imgsweep keeps aborting its transactions in {{"{{"}} $labels.namespace }}"
          description: >-
            {{"{{"}} $labels.job }} aborted {{"{{"}} $value | humanize }} transactions a minute over the last 5 minutes
            (imgsweep_transaction_aborts_total by reason): outcomes are produced again and committed late.
          runbook_url: {{ $runbook }}#transactions-aborting
      {{- end }}
      {{- with include "imgsweep.alert" (list $ "ImgsweepTransactionCommitsSlow") | fromJson }}

      - alert: ImgsweepTransactionCommitsSlow
        # Outcomes reach read_committed readers, and offsets count, only once their transaction commits.
        expr: |
          histogram_quantile(0.99, sum by (namespace, job, le) (rate(imgsweep_transaction_commit_seconds_bucket[10m])))
            > {{ .p99Seconds }}
        for: {{ .for }}
        labels:
          severity: {{ .severity }}
        annotations:
          summary: "imgsweep's transaction commits are slow in {{"{{"}} $labels.namespace }}"
          description: >-
            {{"{{"}} $labels.job }}'s p99 transaction commit took {{"{{"}} $value | humanizeDuration }} over the last 10
            minutes; outcomes reach read_committed readers only once their transaction commits.
          runbook_url: {{ $runbook }}#transaction-commits-slow
      {{- end }}
      {{- with include "imgsweep.alert" (list $ "ImgsweepBudgetStateNotSaved") | fromJson }}

      - alert: ImgsweepBudgetStateNotSaved
        # The budget topic (decision 0021) is how replicas count each other's calls and how a restart keeps its
        # day: while writes fail, other replicas do not see this one's calls (a pack's limit, the day's cap and
        # the reserve may be overspent) and a restart forgets them.
        expr: sum by (namespace, job) (increase(imgsweep_budget_state_write_failures_total[10m])) > 0
        for: {{ .for }}
        labels:
          severity: {{ .severity }}
        annotations:
          summary: "imgsweep cannot save its budget day in {{"{{"}} $labels.namespace }}"
          description: >-
            {{"{{"}} $labels.job }} failed {{"{{"}} $value | humanize }} times in 10 minutes to write the budget topic
            (imgsweep_budget_state_write_failures_total): other replicas do not count its calls and a restart
            forgets them.
          runbook_url: {{ $runbook }}#budget-state
      {{- end }}
      {{- with include "imgsweep.alert" (list $ "ImgsweepBrakeTripped") | fromJson }}

      - alert: ImgsweepBrakeTripped
        # A collection handed more than IMGSWEEP_BRAKE__MAX_IMAGES_PER_HOUR images to calls in a sliding hour on a
        # replica: its deletions stopped on every replica (the control topic) until an operator resumes it. Only
        # tripped collections have a series (collection="other": how many more than the series shown).
        expr: max by (namespace, job, collection) (imgsweep_brake_tripped) > 0
        for: {{ .for }}
        labels:
          severity: {{ .severity }}
        annotations:
          summary: "imgsweep's brake on mass deletes stopped collection {{"{{"}} $labels.collection }} in {{"{{"}} $labels.namespace }}"
          description: >-
            {{"{{"}} $labels.job }} was about to delete more images of collection {{"{{"}} $labels.collection }} in an
            hour than IMGSWEEP_BRAKE__MAX_IMAGES_PER_HOUR allows, so its deletions stopped on every replica: its
            events wait, nothing failed and nothing is committed past them. Check the catalog (did a bug delist
            everything?), then `imgsweep brake resume --collection {{"{{"}} $labels.collection }}` lets them go.
          runbook_url: {{ $runbook }}#brake-tripped
      {{- end }}
      {{- with include "imgsweep.alert" (list $ "ImgsweepPausedForLong") | fromJson }}

      - alert: ImgsweepPausedForLong
        # `imgsweep pause` is for incidents: a pause forgotten holds its events (and the partitions' commits).
        expr: max by (namespace, job, kind) (imgsweep_paused) > 0
        for: {{ .for }}
        labels:
          severity: {{ .severity }}
        annotations:
          summary: "imgsweep's deletions of {{"{{"}} $value }} {{"{{"}} $labels.kind }}(s) have been paused for long in {{"{{"}} $labels.namespace }}"
          description: >-
            For {{ include "imgsweep.duration" .for }} {{"{{"}} $value }} {{"{{"}} $labels.kind }}(s) of {{"{{"}} $labels.job }} have been
            paused (`imgsweep pause`): their events wait, uncommitted, the consumer lag grows and, once
            IMGSWEEP_KAFKA__MAX_PENDING_EVENTS events wait, the other collections of the same partitions wait too.
            `imgsweep brake status` lists them; `imgsweep resume` ends a pause once the incident is over.
          runbook_url: {{ $runbook }}#paused-for-long
      {{- end }}
  {{- end }}
{{- end }}
