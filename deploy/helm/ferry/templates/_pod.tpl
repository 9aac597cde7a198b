{{/* The environment every Ferry container gets (nodes and the migration Job). */}}
{{- define "ferry.databaseEnv" -}}
- name: FERRY_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "ferry.databaseSecretName" . }}
      key: {{ include "ferry.databaseSecretKey" . }}
- name: FERRY_LOG_FORMAT
  value: {{ .Values.ferry.logFormat | quote }}
- name: FERRY_LOG_LEVEL
  value: {{ .Values.ferry.logLevel | quote }}
# The image's user may have no home directory: anything that caches under ~ writes to /tmp.
- name: HOME
  value: /tmp
{{- end -}}

{{/* A node: (dict "root" $ "component" "inference"|"control"). */}}
{{- define "ferry.deployment" -}}
{{- $root := .root -}}
{{- $component := .component -}}
{{- $values := index $root.Values $component -}}
{{- $ferry := $root.Values.ferry -}}
{{- $inference := eq $component "inference" -}}
{{- $scheme := include "ferry.scheme" $root -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "ferry.fullname" $root }}-{{ $component }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "ferry.componentLabels" . | nindent 4 }}
spec:
  {{- if not (and $inference $values.autoscaling.enabled) }}
  replicas: {{ $values.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "ferry.componentSelectorLabels" . | nindent 6 }}
  {{- with $values.strategy }}
  strategy:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  template:
    metadata:
      labels:
        {{- include "ferry.componentLabels" . | nindent 8 }}
        {{- with $values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        # A new database or Redis URL rolls the pods (they read it at start only).
        checksum/config: {{ printf "%s|%s|%s|%s|%s" $root.Values.database.url $root.Values.database.existingSecret $root.Values.redis.url $root.Values.redis.existingSecret $root.Values.storage.type | sha256sum | trunc 16 }}
        {{- with $values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "ferry.serviceAccountName" $root }}
      automountServiceAccountToken: {{ $root.Values.serviceAccount.automountServiceAccountToken }}
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      # Longer than the preStop sleep plus Ferry's drain (FERRY_GRACEFUL_TIMEOUT_S).
      terminationGracePeriodSeconds: {{ include "ferry.terminationGracePeriodSeconds" $root }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      containers:
        - name: ferry
          image: {{ include "ferry.image" $root | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args:
            - server
            - --role
            - {{ $component }}
            - --no-migrate
            - --host
            - {{ $ferry.host | quote }}
            - --port
            - "8000"
            - --grpc-port
            - {{ ternary "8001" "0" $inference | quote }}
            - --data-dir
            - {{ $ferry.dataDir | quote }}
            {{- range $values.extraArgs }}
            - {{ . | quote }}
            {{- end }}
          ports:
            - name: http
              containerPort: 8000
              protocol: TCP
            {{- if $inference }}
            - name: grpc
              containerPort: 8001
              protocol: TCP
            {{- end }}
          env:
            {{- include "ferry.databaseEnv" $root | nindent 12 }}
            - name: FERRY_BOOTSTRAP_ADMIN_KEY_FILE
              value: {{ printf "%s/%s" (include "ferry.bootstrapKeyDir" $root) (include "ferry.authSecretKey" $root) | quote }}
            - name: FERRY_GRACEFUL_TIMEOUT_S
              value: {{ $ferry.gracefulTimeoutSeconds | quote }}
            - name: FERRY_SCHEMA_WAIT_S
              value: {{ $ferry.schemaWaitSeconds | quote }}
            {{- if include "ferry.redisEnabled" $root }}
            - name: FERRY_REDIS_URL
              valueFrom:
                secretKeyRef:
                  name: {{ include "ferry.redisSecretName" $root }}
                  key: {{ include "ferry.redisSecretKey" $root }}
            {{- end }}
            {{- if $ferry.metricsPublic }}
            - name: FERRY_METRICS_PUBLIC
              value: "true"
            {{- end }}
            {{- if $ferry.tlsSecret }}
            - name: FERRY_SSL_CERTFILE
              value: /etc/ferry/tls/tls.crt
            - name: FERRY_SSL_KEYFILE
              value: /etc/ferry/tls/tls.key
            {{- end }}
            {{- if $inference }}
            {{- if not (kindIs "invalid" $values.onnxMemoryMb) }}
            - name: FERRY_ONNX_MEMORY_MB
              value: {{ $values.onnxMemoryMb | int | quote }}
            {{- else if and $values.resources $values.resources.limits $values.resources.limits.memory }}
            - name: FERRY_ONNX_MEMORY_MB
              value: {{ include "ferry.halfMemoryMb" $values.resources.limits.memory | quote }}
            {{- end }}
            {{- end }}
            {{- if eq $root.Values.storage.type "s3" }}
            - name: FERRY_ARTIFACTS_URL
              value: {{ $root.Values.storage.s3.artifactsUrl | quote }}
            {{- with $root.Values.storage.s3.region }}
            - name: AWS_REGION
              value: {{ . | quote }}
            {{- end }}
            {{- with $root.Values.storage.s3.endpointUrl }}
            - name: AWS_ENDPOINT_URL
              value: {{ . | quote }}
            {{- end }}
            {{- end }}
            {{- with $ferry.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
            {{- with $values.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- if and (eq $root.Values.storage.type "s3") $root.Values.storage.s3.existingSecret }}
          envFrom:
            - secretRef:
                name: {{ $root.Values.storage.s3.existingSecret }}
          {{- end }}
          # /v2/health/ready is 503 until every model is loaded (and the node has keys);
          # /v2/health/live only says the process answers. Both are open: no key needed.
          startupProbe:
            httpGet:
              path: /v2/health/ready
              port: http
              scheme: {{ $scheme }}
            {{- toYaml $values.probes.startup | nindent 12 }}
          readinessProbe:
            httpGet:
              path: /v2/health/ready
              port: http
              scheme: {{ $scheme }}
            {{- toYaml $values.probes.readiness | nindent 12 }}
          livenessProbe:
            httpGet:
              path: /v2/health/live
              port: http
              scheme: {{ $scheme }}
            {{- toYaml $values.probes.liveness | nindent 12 }}
          lifecycle:
            # Ferry stops accepting connections on SIGTERM: first let the endpoint
            # removal reach every proxy, then Ferry drains what is in flight.
            preStop:
              {{- if $ferry.preStopSleepAction }}
              sleep:
                seconds: {{ $ferry.preStopSleepSeconds }}
              {{- else }}
              exec:
                command: ["sleep", {{ $ferry.preStopSleepSeconds | quote }}]
              {{- end }}
          resources:
            {{- toYaml $values.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
          volumeMounts:
            - name: data
              mountPath: {{ $ferry.dataDir }}
            - name: tmp
              mountPath: /tmp
            - name: bootstrap-admin-key
              mountPath: {{ include "ferry.bootstrapKeyDir" $root }}
              readOnly: true
            {{- if eq $root.Values.storage.type "pvc" }}
            - name: artifacts
              mountPath: {{ printf "%s/artifacts" $ferry.dataDir }}
            {{- end }}
            {{- if $ferry.tlsSecret }}
            - name: tls
              mountPath: /etc/ferry/tls
              readOnly: true
            {{- end }}
      volumes:
        - name: data
          emptyDir:
            sizeLimit: {{ $values.dataDirSizeLimit }}
        - name: tmp
          emptyDir:
            sizeLimit: {{ $values.tmpSizeLimit }}
        - name: bootstrap-admin-key
          secret:
            secretName: {{ include "ferry.authSecretName" $root }}
            # Owned by root, readable by the pod's group (fsGroup).
            defaultMode: 288  # 0440
            items:
              - key: {{ include "ferry.authSecretKey" $root }}
                path: {{ include "ferry.authSecretKey" $root }}
        {{- if eq $root.Values.storage.type "pvc" }}
        - name: artifacts
          persistentVolumeClaim:
            claimName: {{ default (printf "%s-artifacts" (include "ferry.fullname" $root)) $root.Values.storage.pvc.existingClaim }}
        {{- end }}
        {{- if $ferry.tlsSecret }}
        - name: tls
          secret:
            secretName: {{ $ferry.tlsSecret }}
            defaultMode: 288  # 0440
        {{- end }}
      {{- with $values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end -}}
