/**
 * `ProxyCertificate`: the TLS certificate of the proxy's web listener — an existing ACM
 * certificate by ARN, or a new DNS-validated one for the domain (and `*.domain`).
 */
import * as acm from 'aws-cdk-lib/aws-certificatemanager';
import * as route53 from 'aws-cdk-lib/aws-route53';
import { Construct } from 'constructs';
import { checkCertificateArn, checkDomainName } from './validation';

/** Properties of {@link ProxyCertificate}; give exactly one of `certificateArn` and `validationZone`. */
export interface ProxyCertificateProps {
  /** The proxy's public name. */
  readonly domainName: string;

  /**
   * An existing ACM certificate covering `domainName`, in the stack's region.
   *
   * @default - none; `validationZone` must be given
   */
  readonly certificateArn?: string;

  /**
   * Request a new certificate for `domainName` and `*.domainName`, validated by DNS records in this zone.
   *
   * @default - none; `certificateArn` must be given
   */
  readonly validationZone?: route53.IHostedZone;
}

/** The web listener's certificate. */
export class ProxyCertificate extends Construct {
  public readonly certificate: acm.ICertificate;

  constructor(scope: Construct, id: string, props: ProxyCertificateProps) {
    super(scope, id);
    checkDomainName('domainName', props.domainName);
    if ((props.certificateArn === undefined) === (props.validationZone === undefined)) {
      throw new Error('ProxyCertificate: give exactly one of certificateArn and validationZone');
    }
    if (props.certificateArn !== undefined) {
      checkCertificateArn('certificateArn', props.certificateArn);
      this.certificate = acm.Certificate.fromCertificateArn(this, 'Certificate', props.certificateArn);
    } else {
      this.certificate = new acm.Certificate(this, 'Certificate', {
        domainName: props.domainName,
        subjectAlternativeNames: [`*.${props.domainName}`],
        validation: acm.CertificateValidation.fromDns(props.validationZone),
      });
    }
  }
}
