/**
 * The gateway's S3 route (REST, path-style `/<bucket>/<key>`), forwarded to s3rver.
 *
 * IAM calls: the method and query of each request map to S3's IAM action (GetObject and
 * HeadObject → `s3:GetObject`; PutObject, CopyObject, CreateMultipartUpload, UploadPart and
 * CompleteMultipartUpload → `s3:PutObject`; ListObjects(V2) and HeadBucket → `s3:ListBucket`;
 * ListMultipartUploads → `s3:ListBucketMultipartUploads`; ListParts →
 * `s3:ListMultipartUploadParts`; DeleteObjects → `s3:DeleteObject` per key; bucket
 * subresources → their Get/Put actions) on `arn.object(bucket, key)` or `arn.bucket(bucket)`, with
 * the request's `s3:` condition keys (SSE headers, list prefix). With SSE-KMS (the bucket's
 * default `aws:kms` key, or the request's own SSE headers) a write implies `kms:GenerateDataKey`
 * and a GetObject or CompleteMultipartUpload `kms:Decrypt` on the key, via S3, as AWS requires.
 * UploadPart and GetObject use the bucket's default key (the key an upload was started with, or an
 * object was stored with, is not remembered).
 *
 * Bodies the SDK sends `aws-chunked` (its default flexible checksums) are decoded, and their
 * checksums checked, before s3rver sees them: s3rver would store the framing as the object.
 */
import type { AwsCall } from '../types';
import { arn } from '../types';
import { checkChecksums, decodeAwsChunked } from './aws-chunked';
import { Upstream } from './forward';
import type { ServiceHandler, ServiceRequest } from './gateway';
import { viaService } from './kms';
import { AwsError, refusal } from './protocol';

type Call = Omit<AwsCall, 'caller'>;

/** Bucket subresources: the IAM actions of their GET, PUT and DELETE. */
const BUCKET_SUBRESOURCES: Readonly<Record<string, readonly [get: string, put: string, del: string]>> = {
  versioning: ['GetBucketVersioning', 'PutBucketVersioning', 'PutBucketVersioning'],
  policy: ['GetBucketPolicy', 'PutBucketPolicy', 'DeleteBucketPolicy'],
  encryption: ['GetEncryptionConfiguration', 'PutEncryptionConfiguration', 'PutEncryptionConfiguration'],
  lifecycle: ['GetLifecycleConfiguration', 'PutLifecycleConfiguration', 'PutLifecycleConfiguration'],
  cors: ['GetBucketCORS', 'PutBucketCORS', 'PutBucketCORS'],
  acl: ['GetBucketAcl', 'PutBucketAcl', 'PutBucketAcl'],
  tagging: ['GetBucketTagging', 'PutBucketTagging', 'PutBucketTagging'],
  logging: ['GetBucketLogging', 'PutBucketLogging', 'PutBucketLogging'],
  website: ['GetBucketWebsite', 'PutBucketWebsite', 'DeleteBucketWebsite'],
  notification: ['GetBucketNotification', 'PutBucketNotification', 'PutBucketNotification'],
  ownershipControls: ['GetBucketOwnershipControls', 'PutBucketOwnershipControls', 'PutBucketOwnershipControls'],
  publicAccessBlock: ['GetBucketPublicAccessBlock', 'PutBucketPublicAccessBlock', 'PutBucketPublicAccessBlock'],
  location: ['GetBucketLocation', 'GetBucketLocation', 'GetBucketLocation'],
  versions: ['ListBucketVersions', 'ListBucketVersions', 'ListBucketVersions'],
  uploads: ['ListBucketMultipartUploads', 'ListBucketMultipartUploads', 'ListBucketMultipartUploads'],
};

/** Object subresources: the IAM actions of their GET and PUT. */
const OBJECT_SUBRESOURCES: Readonly<Record<string, readonly [get: string, put: string]>> = {
  tagging: ['GetObjectTagging', 'PutObjectTagging'],
  acl: ['GetObjectAcl', 'PutObjectAcl'],
  attributes: ['GetObjectAttributes', 'GetObjectAttributes'],
  retention: ['GetObjectRetention', 'PutObjectRetention'],
  'legal-hold': ['GetObjectLegalHold', 'PutObjectLegalHold'],
};

const header = (req: Pick<ServiceRequest, 'headers'>, name: string): string | undefined => {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
};

/** Bucket and key of a path-style request path. */
export function bucketAndKey(path: string): { bucket: string; key: string } {
  const [bucket, ...rest] = path.replace(/^\//, '').split('/');
  try {
    return { bucket: decodeURIComponent(bucket), key: decodeURIComponent(rest.join('/')) };
  } catch {
    throw new AwsError(400, 'InvalidURI', "Couldn't parse the specified URI.");
  }
}

/** The copy source (`x-amz-copy-source: /bucket/key?versionId=...`) as an object ARN. */
function copySource(value: string): string {
  const { bucket, key } = bucketAndKey(value.split('?')[0]);
  return arn.object(bucket, key);
}

/** The IAM calls of one S3 request, without the KMS calls it implies. */
export function s3Calls(req: Pick<ServiceRequest, 'method' | 'path' | 'query' | 'headers' | 'body'>): Call[] {
  const { bucket, key } = bucketAndKey(req.path);
  const q = req.query;
  const m = req.method;
  if (!bucket) return [{ action: 's3:ListAllMyBuckets', resource: '*' }];
  const s3 = (action: string, resource: string, context?: Record<string, string>): Call => ({ action: `s3:${action}`, resource, ...(context ? { context } : {}) });
  if (!key) {
    const bucketArn = arn.bucket(bucket);
    const sub = Object.keys(BUCKET_SUBRESOURCES).find((s) => q.has(s));
    if (m === 'POST' && q.has('delete')) {
      const keys = [...req.body.toString('utf8').matchAll(/<Key>([\s\S]*?)<\/Key>/g)].map((k) => xmlUnescape(k[1]));
      return keys.map((k) => s3('DeleteObject', arn.object(bucket, k)));
    }
    if (sub) return [s3(BUCKET_SUBRESOURCES[sub][m === 'PUT' ? 1 : m === 'DELETE' ? 2 : 0], bucketArn)];
    if (m === 'GET' || m === 'HEAD') {
      const context: Record<string, string> = {};
      for (const k of ['prefix', 'delimiter', 'max-keys']) if (q.has(k)) context[`s3:${k}`] = q.get(k) ?? '';
      return [s3('ListBucket', bucketArn, context)];
    }
    if (m === 'PUT') return [s3('CreateBucket', bucketArn)];
    if (m === 'DELETE') return [s3('DeleteBucket', bucketArn)];
    throw new AwsError(405, 'MethodNotAllowed', 'The specified method is not allowed against this resource.');
  }
  const objectArn = arn.object(bucket, key);
  const versioned = q.has('versionId') ? 'Version' : '';
  const sub = Object.keys(OBJECT_SUBRESOURCES).find((s) => q.has(s));
  if (sub && (m === 'GET' || m === 'PUT')) return [s3(OBJECT_SUBRESOURCES[sub][m === 'PUT' ? 1 : 0] + versioned, objectArn)];
  if (m === 'GET' && q.has('uploadId')) return [s3('ListMultipartUploadParts', objectArn)];
  if (m === 'GET' || m === 'HEAD') return [s3(`GetObject${versioned}`, objectArn)];
  if (m === 'DELETE') return [s3(q.has('uploadId') ? 'AbortMultipartUpload' : `DeleteObject${versioned}`, objectArn)];
  if (m === 'PUT' || m === 'POST') {
    const context: Record<string, string> = {};
    for (const h of ['x-amz-server-side-encryption', 'x-amz-server-side-encryption-aws-kms-key-id', 'x-amz-acl']) {
      const v = header(req, h);
      if (v !== undefined) context[`s3:${h}`] = v;
    }
    const source = header(req, 'x-amz-copy-source');
    return [s3('PutObject', objectArn, context), ...(source ? [s3('GetObject', copySource(source))] : [])];
  }
  throw new AwsError(405, 'MethodNotAllowed', 'The specified method is not allowed against this resource.');
}

function xmlUnescape(s: string): string {
  return s.replace(/&(lt|gt|amp|quot|apos|#\d+|#x[0-9a-fA-F]+);/g, (_, e: string) =>
    e === 'lt' ? '<' : e === 'gt' ? '>' : e === 'amp' ? '&' : e === 'quot' ? '"' : e === 'apos' ? "'" : String.fromCodePoint(e.startsWith('#x') ? parseInt(e.slice(2), 16) : Number(e.slice(1))),
  );
}

/** The KMS calls S3 makes for this request: writes generate a data key, reads and multipart completions decrypt. */
export function impliedKmsCalls(req: Pick<ServiceRequest, 'method' | 'path' | 'query' | 'headers'>, bucketKeys: ReadonlyMap<string, string>): Call[] {
  const { bucket, key } = bucketAndKey(req.path);
  if (!bucket || !key || [...Object.keys(OBJECT_SUBRESOURCES)].some((s) => req.query.has(s))) return [];
  const sse = header(req, 'x-amz-server-side-encryption');
  const kmsKey = sse === undefined ? bucketKeys.get(bucket) : sse === 'aws:kms' ? header(req, 'x-amz-server-side-encryption-aws-kms-key-id') ?? bucketKeys.get(bucket) ?? 'alias/aws/s3' : undefined;
  if (!kmsKey) return [];
  const m = req.method;
  if (m === 'GET' && !req.query.has('uploadId')) return [viaService('kms:Decrypt', kmsKey, 's3', 's3:GetObject')];
  if (m === 'POST' && req.query.has('uploadId')) return [viaService('kms:Decrypt', kmsKey, 's3', 's3:PutObject')];
  if (m === 'PUT' || (m === 'POST' && req.query.has('uploads'))) return [viaService('kms:GenerateDataKey', kmsKey, 's3', 's3:PutObject')];
  return [];
}

/** The request as s3rver takes it: an aws-chunked body decoded (and its checksums checked), the caller's signature left out. */
export function forS3rver(req: ServiceRequest): { headers: ServiceRequest['headers']; body: Buffer } {
  const headers = { ...req.headers };
  for (const h of ['authorization', 'x-amz-security-token', 'x-amz-content-sha256', 'x-amz-decoded-content-length', 'x-amz-trailer']) delete headers[h];
  let body = req.body;
  const encodings = (header(req, 'content-encoding') ?? '').split(',').map((e) => e.trim()).filter(Boolean);
  if (encodings.includes('aws-chunked') || header(req, 'x-amz-content-sha256')?.startsWith('STREAMING-')) {
    const { data, trailers } = decodeAwsChunked(req.body);
    const declared = header(req, 'x-amz-decoded-content-length');
    if (declared !== undefined && Number(declared) !== data.length) throw new AwsError(400, 'IncompleteBody', 'You did not provide the number of bytes specified by the Content-Length HTTP header.');
    checkChecksums(data, trailers);
    body = data;
    const rest = encodings.filter((e) => e !== 'aws-chunked');
    if (rest.length) headers['content-encoding'] = rest.join(', ');
    else delete headers['content-encoding'];
  }
  checkChecksums(body, req.headers);
  return { headers, body };
}

/** The S3 route over s3rver at `endpoint`; `bucketKeys` are the buckets' default SSE-KMS keys. */
export function s3Route(endpoint: string, bucketKeys: ReadonlyMap<string, string>): { handler: ServiceHandler; close: () => void } {
  const upstream = new Upstream('s3rver', endpoint);
  const handler: ServiceHandler = async (req, authorize) => {
    const denied = refusal('s3', req.caller, authorize, [...s3Calls(req), ...impliedKmsCalls(req, bucketKeys)]);
    if (denied) return denied;
    const out = forS3rver(req);
    return upstream.send(req.method, req.url, out.headers, out.body);
  };
  return { handler, close: () => upstream.close() };
}
