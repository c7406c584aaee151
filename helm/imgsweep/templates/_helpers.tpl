{{/*
Names, labels, and the checks that make a bad combination of values fail at render time with a message
saying what to change (values.schema.json catches bad single values first).
*/}}

{{- define "imgsweep.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "imgsweep.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "imgsweep.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "imgsweep.selectorLabels" -}}
app.kubernetes.io/name: {{ include "imgsweep.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Every object carries these. */}}
{{- define "imgsweep.labels" -}}
helm.sh/chart: {{ include "imgsweep.chart" . }}
{{ include "imgsweep.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/component: consumer
app.kubernetes.io/part-of: imgsweep
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "imgsweep.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "imgsweep.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "imgsweep.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Where the Secret's keys appear as files; imgsweep reads IMGSWEEP_SECRETS_DIR. */}}
{{- define "imgsweep.secretsDir" -}}
/var/run/secrets/imgsweep
{{- end }}

{{/* The chart renders its own Secret only when it has something to put in it and none is named. */}}
{{- define "imgsweep.createSecret" -}}
{{- $s := .Values.secrets }}
{{- if and (not .Values.existingSecret) (or $s.apiAccessKey $s.apiSecretKey $s.kafkaSaslPassword $s.accounts .Values.kafka.secretProperties) }}true{{ end }}
{{- end }}

{{/* The Secret mounted in the pod, if any. */}}
{{- define "imgsweep.secretName" -}}
{{- if .Values.existingSecret }}
{{- .Values.existingSecret }}
{{- else if include "imgsweep.createSecret" . }}
{{- include "imgsweep.fullname" . }}
{{- end }}
{{- end }}

{{/*
The container's env entries (a YAML list, possibly empty): where the secrets are mounted, the pod's name as its
group instance id (kafka.staticMembership), librdkafka properties read from kafka.existingSecret (one
IMGSWEEP_KAFKA__SECRET_PROPERTIES__<property> each), then extraEnv.
*/}}
{{- define "imgsweep.env" -}}
{{- if include "imgsweep.secretName" . }}
- name: IMGSWEEP_SECRETS_DIR
  value: {{ include "imgsweep.secretsDir" . }}
{{- end }}
{{- if .Values.kafka.staticMembership }}
- name: IMGSWEEP_KAFKA__GROUP_INSTANCE_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- end }}
{{- range $property, $key := .Values.kafka.existingSecretProperties }}
- name: IMGSWEEP_KAFKA__SECRET_PROPERTIES__{{ $property }}
  valueFrom:
    secretKeyRef:
      name: {{ $.Values.kafka.existingSecret }}
      key: {{ $key }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "imgsweep.terminationGracePeriodSeconds" -}}
{{- add (int .Values.shutdownGraceSeconds) (int .Values.terminationGraceMarginSeconds) }}
{{- end }}

{{/* A number as a setting: integral ones without exponent form (Helm reads numbers in values as float64). */}}
{{- define "imgsweep.number" -}}
{{- if and (kindIs "float64" .) (eq . (float64 (int64 .))) }}{{ int64 . }}{{ else }}{{ toString . }}{{ end }}
{{- end }}

{{/* The optional settings of the api section and of an account: value name -> variable suffix. */}}
{{- define "imgsweep.budgetSettings" -}}
{{- toJson (dict
  "allowance" "ALLOWANCE"
  "dailyCalls" "DAILY_CALLS"
  "reserveCalls" "RESERVE_CALLS"
  "reserveFraction" "RESERVE_FRACTION"
  "pricePerCall" "PRICE_PER_CALL"
  "dailySpendLimit" "DAILY_SPEND_LIMIT"
) }}
{{- end }}
{{- define "imgsweep.accountSettings" -}}
{{- toJson (merge (dict
  "endpoint" "ENDPOINT"
  "region" "REGION"
  "qps" "QPS"
  "workers" "WORKERS"
) (include "imgsweep.budgetSettings" . | fromJson)) }}
{{- end }}

{{/*
The accounts imgsweep calls the API with, as JSON: [{name, qps}] with each account's qps (its own, else api.qps),
or the one account "default" of api.* when accounts is empty. `labelled` says whether to select its metrics by
their account label (only named accounts: with the default one, every series is its).
*/}}
{{- define "imgsweep.accountsQps" -}}
{{- $v := .Values }}
{{- $list := list }}
{{- range $a := $v.accounts }}
{{- $qps := $v.api.qps }}
{{- if not (kindIs "invalid" (index $a "qps" | default nil)) }}{{ $qps = $a.qps }}{{ end }}
{{- $list = append $list (dict "name" $a.name "qps" $qps "labelled" true) }}
{{- end }}
{{- if not $list }}
{{- $list = list (dict "name" "default" "qps" $v.api.qps "labelled" false) }}
{{- end }}
{{- toJson $list }}
{{- end }}

{{/*
The IMGSWEEP_* settings of the ConfigMap, as a dict (name -> string). Integers go through int64 so that large
ones are not printed in exponent form (Helm reads numbers in values as float64).
*/}}
{{- define "imgsweep.settings" -}}
{{- $v := .Values }}
{{- $settings := dict
  "IMGSWEEP_KAFKA__BOOTSTRAP_SERVERS" $v.kafka.bootstrapServers
  "IMGSWEEP_KAFKA__GROUP_ID" $v.kafka.groupId
  "IMGSWEEP_KAFKA__INPUT_TOPIC" $v.kafka.inputTopic
  "IMGSWEEP_KAFKA__OUTCOME_TOPIC" $v.kafka.outcomeTopic
  "IMGSWEEP_KAFKA__DLQ_TOPIC" $v.kafka.dlqTopic
  "IMGSWEEP_KAFKA__DEMAND_TOPIC" $v.kafka.demandTopic
  "IMGSWEEP_KAFKA__PROPERTIES" ($v.kafka.properties | default dict | toJson)
  "IMGSWEEP_KAFKA__MAX_POLL_INTERVAL_MS" ($v.kafka.maxPollIntervalMs | int64 | toString)
  "IMGSWEEP_KAFKA__GROUP_PROTOCOL" $v.kafka.groupProtocol
  "IMGSWEEP_KAFKA__MAX_PENDING_EVENTS" ($v.kafka.maxPendingEvents | int64 | toString)
  "IMGSWEEP_API__ENDPOINT" $v.api.endpoint
  "IMGSWEEP_API__REGION" $v.api.region
  "IMGSWEEP_API__SERVICE" $v.api.service
  "IMGSWEEP_API__QPS" ($v.api.qps | toString)
  "IMGSWEEP_API__QPS_SHARE" $v.api.qpsShare
  "IMGSWEEP_API__WORKERS" ($v.api.workers | int64 | toString)
  "IMGSWEEP_BATCH__MAX_ITEMS" ($v.batch.maxItems | int64 | toString)
  "IMGSWEEP_BATCH__MAX_BYTES" ($v.batch.maxBytes | int64 | toString)
  "IMGSWEEP_BATCH__LINGER_SECONDS" ($v.batch.lingerSeconds | toString)
  "IMGSWEEP_HTTP__PORT" ($v.http.port | int64 | toString)
  "IMGSWEEP_LOG__LEVEL" $v.log.level
  "IMGSWEEP_LOG__FORMAT" $v.log.format
  "IMGSWEEP_DRY_RUN" ($v.dryRun | toString)
  "IMGSWEEP_SHUTDOWN_GRACE_SECONDS" ($v.shutdownGraceSeconds | int64 | toString)
}}
{{- if $v.kafka.saslUsername }}
{{- $_ := set $settings "IMGSWEEP_KAFKA__SASL_USERNAME" $v.kafka.saslUsername }}
{{- end }}
{{- /* The call budget's and the accounts' values are rendered only when present, so an upgrade with
     --reuse-values from a chart without them leaves imgsweep's defaults (the same as the chart's). */}}
{{- range $key, $suffix := include "imgsweep.budgetSettings" . | fromJson | merge (dict "quotaResetZone" "QUOTA_RESET_ZONE") }}
{{- if and (hasKey $v.api $key) (not (kindIs "invalid" (index $v.api $key))) }}
{{- $_ := set $settings (print "IMGSWEEP_API__" $suffix) (include "imgsweep.number" (index $v.api $key)) }}
{{- end }}
{{- end }}
{{- if and (hasKey $v.batch "maxWaitSeconds") (not (kindIs "invalid" $v.batch.maxWaitSeconds)) }}
{{- $_ := set $settings "IMGSWEEP_BATCH__MAX_WAIT_SECONDS" (include "imgsweep.number" $v.batch.maxWaitSeconds) }}
{{- end }}
{{- /* The control topic and the brake: also only when present (imgsweep's defaults are the chart's). */}}
{{- if $v.kafka.controlTopic }}
{{- $_ := set $settings "IMGSWEEP_KAFKA__CONTROL_TOPIC" $v.kafka.controlTopic }}
{{- end }}
{{- /* Delivery and the state kept on Kafka (decision 0019): also only when present. */}}
{{- if $v.kafka.delivery }}
{{- $_ := set $settings "IMGSWEEP_KAFKA__DELIVERY" $v.kafka.delivery }}
{{- end }}
{{- if $v.kafka.deletionsTopic }}
{{- $_ := set $settings "IMGSWEEP_KAFKA__DELETIONS_TOPIC" $v.kafka.deletionsTopic }}
{{- end }}
{{- if $v.kafka.budgetTopic }}
{{- $_ := set $settings "IMGSWEEP_KAFKA__BUDGET_TOPIC" $v.kafka.budgetTopic }}
{{- end }}
{{- /* The collections topic (decision 0022): also only when present. */}}
{{- if and (hasKey $v.kafka "repartition") (not (kindIs "invalid" $v.kafka.repartition)) }}
{{- $_ := set $settings "IMGSWEEP_KAFKA__REPARTITION" ($v.kafka.repartition | toString) }}
{{- end }}
{{- if $v.kafka.collectionsTopic }}
{{- $_ := set $settings "IMGSWEEP_KAFKA__COLLECTIONS_TOPIC" $v.kafka.collectionsTopic }}
{{- end }}
{{- if and (hasKey $v.kafka "createTopics") (not (kindIs "invalid" $v.kafka.createTopics)) }}
{{- $_ := set $settings "IMGSWEEP_KAFKA__CREATE_TOPICS" ($v.kafka.createTopics | toString) }}
{{- end }}
{{- if and $v.brake (hasKey $v.brake "maxImagesPerHour") (not (kindIs "invalid" $v.brake.maxImagesPerHour)) }}
{{- $_ := set $settings "IMGSWEEP_BRAKE__MAX_IMAGES_PER_HOUR" ($v.brake.maxImagesPerHour | int64 | toString) }}
{{- end }}
{{- $accountSettings := include "imgsweep.accountSettings" . | fromJson }}
{{- range $a := $v.accounts }}
{{- /* Never the keys: those are in the Secret (secrets.accounts or existingSecret). */}}
{{- $prefix := printf "IMGSWEEP_ACCOUNTS__%s__" (upper $a.name) }}
{{- $_ := set $settings (print $prefix "COLLECTIONS") (toJson $a.collections) }}
{{- range $key, $suffix := $accountSettings }}
{{- if and (hasKey $a $key) (not (kindIs "invalid" (index $a $key))) }}
{{- $_ := set $settings (print $prefix $suffix) (include "imgsweep.number" (index $a $key)) }}
{{- end }}
{{- end }}
{{- end }}
{{- if eq $v.kafka.groupProtocol "classic" }}
{{- /* with the consumer protocol (KIP-848) the broker keeps the session, and imgsweep refuses the setting */}}
{{- $_ := set $settings "IMGSWEEP_KAFKA__SESSION_TIMEOUT_MS" ($v.kafka.sessionTimeoutMs | int64 | toString) }}
{{- end }}
{{- range $name, $value := $v.extraConfig }}
{{- if hasPrefix "IMGSWEEP_ACCOUNTS__" (upper $name) }}
{{- fail (printf "extraConfig.%s: accounts are set by the chart's accounts value (their keys by secrets.accounts or existingSecret); move it there (see values.yaml)" $name) }}
{{- end }}
{{- if and (eq (upper $name) "IMGSWEEP_API__QUOTA_RESET_UTC_OFFSET") (hasKey $settings "IMGSWEEP_API__QUOTA_RESET_ZONE") }}
{{- fail (printf "extraConfig.%s is the old name of IMGSWEEP_API__QUOTA_RESET_ZONE, which the chart sets from api.quotaResetZone: set api.quotaResetZone instead (an offset like +08:00 or an IANA name)" $name) }}
{{- end }}
{{- if hasKey $settings $name }}
{{- fail (printf "extraConfig.%s: the chart already sets %s from its own value; set that value instead (see values.yaml)" $name $name) }}
{{- end }}
{{- $_ := set $settings $name (toString $value) }}
{{- end }}
{{- toYaml $settings }}
{{- end }}

{{/* Combinations of values that cannot work; called by every template that depends on them. */}}
{{- define "imgsweep.validate" -}}
{{- $v := .Values }}
{{- if and $v.keda.enabled $v.autoscaling.enabled }}
{{- fail "keda.enabled and autoscaling.enabled are mutually exclusive: a KEDA ScaledObject creates its own HorizontalPodAutoscaler, so two would fight over the Deployment's replicas. Enable one of them." }}
{{- end }}
{{- if and $v.serviceMonitor.enabled $v.podMonitor.enabled }}
{{- fail "serviceMonitor.enabled and podMonitor.enabled are mutually exclusive: each replica would be scraped twice and every aggregated series doubled. Enable one of them." }}
{{- end }}
{{- if and $v.autoscaling.enabled (not (dig "requests" "cpu" "" $v.resources)) }}
{{- fail "autoscaling.enabled scales on CPU utilisation, which is relative to the CPU request: set resources.requests.cpu." }}
{{- end }}
{{- $s := $v.secrets }}
{{- if and $v.existingSecret (or $s.apiAccessKey $s.apiSecretKey $s.kafkaSaslPassword $s.accounts) }}
{{- fail (printf "existingSecret (%s) and secrets.* are both set: the chart would ignore secrets.*. Put the keys in %s, or unset existingSecret." $v.existingSecret $v.existingSecret) }}
{{- end }}
{{- $k := $v.kafka }}
{{- range $name, $_ := $k.properties }}
{{- if regexMatch "(?i)(password|passphrase|secret|key\\.pem|private\\.key|oauthbearer\\.config)" $name }}
{{- fail (printf "kafka.properties.%s looks like a secret, and kafka.properties is a ConfigMap: move it to kafka.secretProperties (the chart Secret) or to kafka.existingSecretProperties (a key of kafka.existingSecret)." $name) }}
{{- end }}
{{- if or (hasKey $k.secretProperties $name) (hasKey $k.existingSecretProperties $name) }}
{{- fail (printf "kafka.properties.%s is also set as a secret property: keep it in one place." $name) }}
{{- end }}
{{- end }}
{{- if and $k.secretProperties $v.existingSecret }}
{{- fail (printf "kafka.secretProperties needs the chart's Secret, but existingSecret (%s) replaces it: put keys IMGSWEEP_KAFKA__SECRET_PROPERTIES__<property> in %s, or use kafka.existingSecret with kafka.existingSecretProperties." $v.existingSecret $v.existingSecret) }}
{{- end }}
{{- if and $k.existingSecretProperties (not $k.existingSecret) }}
{{- fail "kafka.existingSecretProperties names keys of kafka.existingSecret, which is not set: set kafka.existingSecret to the Secret's name." }}
{{- end }}
{{- if and $k.existingSecret (not $k.existingSecretProperties) }}
{{- fail (printf "kafka.existingSecret (%s) is set but no property reads from it: map librdkafka properties to its keys in kafka.existingSecretProperties, e.g. {\"sasl.password\": \"password\"}." $k.existingSecret) }}
{{- end }}
{{- range $name, $_ := $k.secretProperties }}
{{- if hasKey $k.existingSecretProperties $name }}
{{- fail (printf "kafka.secretProperties.%s and kafka.existingSecretProperties.%s are both set: keep one." $name $name) }}
{{- end }}
{{- end }}
{{- $configured := include "imgsweep.settings" . | fromYaml }}
{{- range $v.extraEnv }}
{{- if and $v.kafka.staticMembership (eq .name "IMGSWEEP_KAFKA__GROUP_INSTANCE_ID") }}
{{- fail "extraEnv IMGSWEEP_KAFKA__GROUP_INSTANCE_ID: kafka.staticMembership already sets it to the pod's name (unique per pod, as an instance id must be)." }}
{{- end }}
{{- if hasKey $configured .name }}
{{- fail (printf "extraEnv %s: the chart's ConfigMap already sets it, and an env entry would silently win; set the chart's own value instead (see values.yaml)." .name) }}
{{- end }}
{{- end }}
{{- $selector := include "imgsweep.selectorLabels" . | fromYaml }}
{{- range $name, $_ := $v.podLabels }}
{{- if hasKey $selector $name }}
{{- fail (printf "podLabels.%s: the chart sets this label to select its pods; choose another label name." $name) }}
{{- end }}
{{- end }}
{{- $accounts := $v.accounts | default list }}
{{- $names := dict }}
{{- $owner := dict }}
{{- range $a := $accounts }}
{{- if hasKey $names $a.name }}
{{- fail (printf "accounts: two accounts are named %s; each needs its own name (it names its variables IMGSWEEP_ACCOUNTS__%s__* and its metrics' account label)." $a.name (upper $a.name)) }}
{{- end }}
{{- $_ := set $names $a.name true }}
{{- range $c := $a.collections }}
{{- if and (hasKey $owner $c) (eq $c "*") }}
{{- fail (printf "accounts %s and %s both have collections [\"*\"] (every collection no other account names): at most one account may; name the other's collections." (index $owner $c) $a.name) }}
{{- else if hasKey $owner $c }}
{{- fail (printf "accounts: collection %s is in the collections of both account %s and account %s; a collection belongs to one account." $c (index $owner $c) $a.name) }}
{{- end }}
{{- $_ := set $owner $c $a.name }}
{{- end }}
{{- end }}
{{- range $name, $_ := $s.accounts | default dict }}
{{- if not (hasKey $names $name) }}
{{- fail (printf "secrets.accounts.%s: no account of that name in accounts (%s); name its keys after one of them, or add the account." $name (keys $names | sortAlpha | join ", " | default "none")) }}
{{- end }}
{{- end }}
{{- if and $accounts (or $s.apiAccessKey $s.apiSecretKey) }}
{{- fail "secrets.apiAccessKey and secrets.apiSecretKey are the keys of the one default account, which accounts replaces: no account would use them (imgsweep refuses IMGSWEEP_API__ACCESS_KEY with accounts). Put each account's keys in secrets.accounts.<name> and remove secrets.apiAccessKey and secrets.apiSecretKey." }}
{{- end }}
{{- /* The pack rules on what each account ends up with: a setting it leaves out is api.*'s. */}}
{{- $budget := list (dict "where" "api" "allowance" ($v.api.allowance | default "daily") "price" (index $v.api "pricePerCall" | default nil) "limit" (index $v.api "dailySpendLimit" | default nil)) }}
{{- range $a := $accounts }}
{{- $budget = append $budget (dict
  "where" (printf "account %s (a value it leaves out is api.*'s)" $a.name)
  "allowance" (index $a "allowance" | default ($v.api.allowance | default "daily"))
  "price" (index $a "pricePerCall" | default (index $v.api "pricePerCall" | default nil))
  "limit" (index $a "dailySpendLimit" | default (index $v.api "dailySpendLimit" | default nil))
) }}
{{- end }}
{{- range $budget }}
{{- if ne (kindIs "invalid" .price) (kindIs "invalid" .limit) }}
{{- fail (printf "%s: set pricePerCall and dailySpendLimit together, or neither (a pack's price per call and its most money spent in a day)." .where) }}
{{- end }}
{{- if and (not (kindIs "invalid" .limit)) (ne .allowance "pack") }}
{{- fail (printf "%s: a daily spending limit (dailySpendLimit) needs allowance: pack, not %s." .where .allowance) }}
{{- end }}
{{- end }}
{{- if and (hasKey $v.batch "maxWaitSeconds") (lt (float64 $v.batch.maxWaitSeconds) (float64 $v.batch.lingerSeconds)) }}
{{- fail (printf "batch.maxWaitSeconds (%v) must be at least batch.lingerSeconds (%v): a partial batch always waits the linger." $v.batch.maxWaitSeconds $v.batch.lingerSeconds) }}
{{- end }}
{{- if and (not $v.dryRun) (not $v.existingSecret) }}
{{- if $accounts }}
{{- range $a := $accounts }}
{{- if not (and (dig $a.name "accessKey" "" ($s.accounts | default dict)) (dig $a.name "secretKey" "" ($s.accounts | default dict))) }}
{{- $NAME := upper $a.name }}
{{- fail (printf "dryRun is false, so imgsweep calls the delete API with account %s's keys: set secrets.accounts.%s.accessKey and secrets.accounts.%s.secretKey, or existingSecret (a Secret with keys IMGSWEEP_ACCOUNTS__%s__ACCESS_KEY and IMGSWEEP_ACCOUNTS__%s__SECRET_KEY for every account). Or keep dryRun: true." $a.name $a.name $a.name $NAME $NAME) }}
{{- end }}
{{- end }}
{{- else if not (and $s.apiAccessKey $s.apiSecretKey) }}
{{- fail "dryRun is false, so imgsweep calls the delete API and needs its keys: set secrets.apiAccessKey and secrets.apiSecretKey, or existingSecret (a Secret with keys IMGSWEEP_API__ACCESS_KEY and IMGSWEEP_API__SECRET_KEY). Or keep dryRun: true." }}
{{- end }}
{{- end }}
{{- end }}
